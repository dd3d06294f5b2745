"""A PNG grid of original / perturbed pairs with the target's and the oracles' predictions,
so that people can see what the FMR search changes and what the oracle still accepts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from pk_oracle.evaluators.search import SearchResult


def pick_examples(result: SearchResult, count: int) -> list[int]:
    """Oracle-valid samples: the fooled ones first (what the metric rewards), then the rest."""
    valid = result.valid
    fooled = (valid & result.fooled & (result.steps > 0)).nonzero().flatten().tolist()
    kept = (valid & ~result.fooled).nonzero().flatten().tolist()
    half = max(count // 2, count - len(kept))
    return (fooled[:half] + kept)[:count]


def _as_image(v: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    shape = list(shape)
    if len(shape) == 3 and shape[0] == 1:
        return v.reshape(shape[1], shape[2])
    if len(shape) == 3 and shape[0] == 3:
        return v.reshape(*shape).permute(1, 2, 0)
    side = int(math.isqrt(v.numel()))
    return v.reshape(side, side) if side * side == v.numel() else v.reshape(1, -1)


def write_grid(path: Path, x: torch.Tensor, result: SearchResult, y: torch.Tensor, clean_pred: torch.Tensor,
               star_pred: torch.Tensor, oracle_pred: torch.Tensor, oracle_names: Sequence[str],
               image_shape: Sequence[int], count: int, pairs_per_row: int = 4) -> Path | None:
    """Write up to ``count`` pairs; each title gives the label, the target's prediction before
    -> after and the oracles' predictions on the perturbed image. Returns None if nothing to show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = pick_examples(result, count)
    if not chosen:
        return None
    rows = math.ceil(len(chosen) / pairs_per_row)
    fig, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.0 * 2 * pairs_per_row, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, i in enumerate(chosen):
        r, c = divmod(n, pairs_per_row)
        left, right = axes[r][2 * c], axes[r][2 * c + 1]
        left.imshow(_as_image(x[i], image_shape).numpy(), cmap="gray", vmin=0, vmax=1)
        left.set_title(f"y={int(y[i])}  f={int(clean_pred[i])}", fontsize=8)
        right.imshow(_as_image(result.x_star[i], image_shape).numpy(), cmap="gray", vmin=0, vmax=1)
        oracles = ",".join(str(int(p)) for p in oracle_pred[:, i])
        colour = "red" if int(star_pred[i]) != int(y[i]) else "black"
        right.set_title(f"f*={int(star_pred[i])} oracles={oracles}\nsteps={int(result.steps[i])}", fontsize=8,
                        color=colour)
    fig.suptitle(f"FMR search: original | perturbed (oracles: {', '.join(oracle_names)}; red = target fooled)",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
