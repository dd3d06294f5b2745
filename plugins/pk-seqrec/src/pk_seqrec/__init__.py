"""pk-seqrec: the sequential-recommendation base plugin (see the README's "Building on pk-seqrec")."""

__version__ = "0.1.0"
