"""pk-remi: multi-interest candidate matching (ComiRec-SA, ComiRec-DR, MIND) with REMI's
interest-aware hard negatives (IHN) and routing regularisation (RR). Heavy code lives in
submodules and is imported lazily."""

__version__ = "0.1.0"
