"""The ``nomade`` command line: subcommands and the status screen."""
