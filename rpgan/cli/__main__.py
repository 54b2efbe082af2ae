from rpgan.cli.main import main

main()
