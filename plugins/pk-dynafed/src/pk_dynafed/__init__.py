"""pk-dynafed: the Dynafed aggregator (arXiv 2211.10878). Heavy code lives in submodules."""
