"""Client behaviours (attacks). Attacks live on the client side, never in the aggregator.

Two hooks, both pure functions the simulator calls for malicious clients only:

- ``poison_labels(y, num_classes, attack)``: data poisoning during local training
  (label flip: ``y -> (y + 1) mod C``; all-to-one: every label -> 1).
- ``poison_updates(global_state, states, attack, ...)``: model poisoning after local training,
  with knowledge of the round's other results (LIE needs the benign clients' statistics). Update means
  ``delta = state - global``. sign flip: ``global - scale * delta``; scale: ``global + scale * delta``;
  gaussian: ``global + N(0, sigma^2)`` (the update is replaced by noise); lie ("A Little Is
  Enough", Baruch et al. 2019): every malicious client sends ``global + mu - z * sigma`` with
  ``mu``, ``sigma`` the coordinate-wise mean and (population) std of the **benign** clients'
  deltas of the round, as the paper's omniscient attacker uses them (the malicious clients' own
  honest deltas when the round has no benign client); lie-own: the same with the statistics
  of the malicious clients' own honest deltas (the statistics-based poisoning the Dynafed
  code base prepares, and pk's earlier "lie"). ``z`` is the config's ``lie_z``, or with
  ``lie_z_rule = "paper"`` the paper's largest undetected shift :func:`lie_paper_z` of the round.

Only floating-point tensors are poisoned; integer buffers pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import NormalDist

import torch

LABEL_ATTACKS = ("label-flip", "all-to-one")
MODEL_ATTACKS = ("sign-flip", "scale", "gaussian", "lie", "lie-own")
ATTACKS = ("none", *LABEL_ATTACKS, *MODEL_ATTACKS)

State = Mapping[str, torch.Tensor]


def lie_paper_z(n: int, m: int) -> float:
    """LIE's z_max for ``n`` clients of which ``m`` are malicious (Baruch et al. 2019, Alg. 3):
    ``s = floor(n / 2 + 1) - m`` benign clients must be out-voted, and ``z = Phi^-1((n - s) / n)``.
    ``s`` is held at ≥ 1 and the probability at ≥ 0.5, so z is finite and ≥ 0 for every n ≥ 1."""
    if n < 1 or not 0 <= m <= n:
        raise ValueError(f"lie_paper_z needs 0 <= m <= n and n >= 1, got n={n}, m={m}")
    supporters = max(1, n // 2 + 1 - m)
    return NormalDist().inv_cdf(max(0.5, (n - supporters) / n))


def poison_labels(y: torch.Tensor, num_classes: int, attack: str) -> torch.Tensor:
    """Return poisoned labels (a new tensor) for a label attack, ``y`` itself otherwise."""
    if attack == "label-flip":
        return (y + 1) % num_classes
    if attack == "all-to-one":
        return torch.ones_like(y)
    return y


def poison_updates(
    global_state: State,
    states: Sequence[State],
    attack: str,
    *,
    scale: float = 5.0,
    sigma: float = 1.0,
    z: float = 1.0,
    generator: torch.Generator | None = None,
    benign: Sequence[State] = (),
) -> list[dict[str, torch.Tensor]]:
    """Rewrite the malicious clients' states ``states`` for a model attack (new dicts; inputs
    untouched). ``benign``: the honest clients' states of the same round (used by "lie")."""
    if attack not in MODEL_ATTACKS or not states:
        return [dict(s) for s in states]
    out: list[dict[str, torch.Tensor]] = [dict(s) for s in states]
    for key, ref in global_state.items():
        if not ref.is_floating_point():
            continue
        base = ref.detach().to(torch.float64)
        deltas = torch.stack([s[key].detach().to(torch.float64) - base for s in states])
        if attack == "sign-flip":
            poisoned = base - scale * deltas
        elif attack == "scale":
            poisoned = base + scale * deltas
        elif attack == "gaussian":
            noise = torch.randn(deltas.shape, generator=generator, dtype=torch.float64)
            poisoned = base + sigma * noise
        else:  # lie, lie-own
            source = deltas
            if attack == "lie" and benign:
                source = torch.stack([s[key].detach().to(torch.float64) - base for s in benign])
            std = source.std(0, unbiased=False) if len(source) > 1 else torch.zeros_like(base)
            poisoned = (base + source.mean(0) - z * std).expand_as(deltas)
        for i in range(len(states)):
            out[i][key] = poisoned[i].to(ref.dtype)
    return out
