"""The ``fmr`` (:mod:`.fmr`) and ``pgd`` (:mod:`.pgd`) evaluators.

:mod:`.assets` fits and caches the oracle zoo and the generator, :mod:`.common` holds what
both evaluators share, :mod:`.search` the latent search, PGD and the SA/PA/FMR summary, and
:mod:`.grid` the original/perturbed image grid.
"""
