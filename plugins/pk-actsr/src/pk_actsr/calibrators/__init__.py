"""AC-TSR calibrators for pk-seqrec's attention seam.

Seam (pk_seqrec.models.encoder), per layer ``i``: ``scores = Q Kᵀ / sqrt(d)`` [B, h, L, L]
-> ``adjust_scores`` -> masked softmax -> ``calibrate`` -> dropout -> ``@ V``. ``mask`` is
bool [B, 1, L|1, L], True where a query may attend a key.

The seam passes no query/key features, so a host that wants the full method calls
:meth:`attach` once (sizes, gate width, dropout) and, per forward, :meth:`begin` (key
positions), ``observe(attention_module, x, layer)`` from a pre-hook on every attention
layer, and :meth:`end` (returns the :class:`Session` with the adversarial trace). Stand-alone
(not attached, as in pk's contract suite) the predictors see zero features and the key
positions are the tensor indices; the output is still a valid attention.

Invariants (tested): outputs are non-negative, rows sum to 1 over unmasked keys, masked
keys get exactly 0; the perturbation mask M is in [0, 1] before dropout; the separable and
the direct spatial terms agree.
"""

from pk_actsr.calibrators.adversarial import AdversarialCalibrator, mask_penalty, perturbed_attention
from pk_actsr.calibrators.base import LayerInput, Session
from pk_actsr.calibrators.spatial import LOG_EPS, SpatialCalibrator, pair_linear_direct, pair_linear_separable
from pk_actsr.calibrators.two_level import ACTSRCalibrator

__all__ = ["LOG_EPS", "ACTSRCalibrator", "AdversarialCalibrator", "LayerInput", "Session", "SpatialCalibrator",
           "mask_penalty", "pair_linear_direct", "pair_linear_separable", "perturbed_attention"]
