"""pk.cli: the ``pk`` command line (click), with lazily imported subcommands."""
