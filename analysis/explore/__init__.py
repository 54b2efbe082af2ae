"""`rpgan explore`: a trained model's layers, hands-on, in a local web page.

  views.py      what the page shows for one state (a frozen path, z, EigenGAN coefficients):
                the image and, per bucket, a row of its variations; rows cached (no web code)
  run_results.py the run's analysis results (responsibility, dissection, directions), if present
  server.py     the Flask app: the page, its JSON API, one-line errors as 4xx JSON; serving
  static/       the page itself (HTML, CSS, JS; nothing loaded from outside the server)
"""
