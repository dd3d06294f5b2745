"""Subcommands of ``pk``; each module is imported only when its command runs."""
