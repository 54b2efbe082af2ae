import rpgan  # noqa: F401  (first: sets how a local Ray binds before anything imports ray)
