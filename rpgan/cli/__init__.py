"""The `rpgan` command line: options wired to library functions, nothing more (main.py assembles it)."""
