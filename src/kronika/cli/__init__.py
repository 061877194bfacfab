"""The ``kronika`` command-line tool; :mod:`kronika.cli.app` holds the root command."""
