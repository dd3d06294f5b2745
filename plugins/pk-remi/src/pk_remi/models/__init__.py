"""Models: the multi-interest retrievers (``multi_interest``: ComiRec-SA, ComiRec-DR, MIND;
REMI is ComiRec-SA with its add-ons switched on) and their loss pieces (``losses``)."""

from pk_remi.models.multi_interest import (
    MIND,
    ComiRecDR,
    ComiRecSA,
    MultiInterestModel,
    build_comirec_dr,
    build_comirec_sa,
    build_mind,
)

__all__ = ["MIND", "ComiRecDR", "ComiRecSA", "MultiInterestModel", "build_comirec_dr", "build_comirec_sa", "build_mind"]
