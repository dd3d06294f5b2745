"""pk-solar datasets: :mod:`.text_lm` (``text-lm``) and the bundled public-domain text in ``texts/``."""
