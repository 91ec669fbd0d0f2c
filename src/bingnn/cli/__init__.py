"""The ``bingnn`` command line: one module per subcommand (see :mod:`bingnn.cli.main`)."""
