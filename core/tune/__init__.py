"""``pk tune``: equal-effort hyper-parameter search on Optuna, then the usual comparison.

A batch recipe gains a ``[tune]`` table::

    [tune]
    trials = 8                      # per arm; every tuned arm gets the same number
    metric = "valid.accuracy"       # validation only: valid.* (logged each epoch) or fit.*
    direction = "maximize"          # default: from the metric's name (loss -> minimize)
    sampler = "tpe"                 # tpe | random
    pruner = "median"               # median | asha | none
    seed = 0                        # the sampler's seed
    startup_trials = 2              # trials per arm before the pruner may prune
    warmup_epochs = 1               # epochs of a trial before the pruner may prune it
    arms = ["linear", "mlp"]        # default: [batch] baseline and method (else every run)
    space = { "trainer.lr" = { log_uniform = [1e-4, 1e-1] } }   # for every arm
    [tune.runs.mlp]
    space = { "model.dropout" = { choice = [0.0, 0.2] } }       # this arm's own (merged)

Search-space entries: ``uniform = [lo, hi]``, ``log_uniform = [lo, hi]``, ``int = [lo, hi]``
(optional ``step``), ``log_int = [lo, hi]``, ``choice = [v, ...]`` (any TOML values, lists
included). Keys of the runs' fingerprint (dataset, evaluator, trainer budget) and ``run.*``
cannot be tuned, and arms with different trial counts are refused, unless ``[batch]
unequal`` names the key (``"tune.trials"`` for the counts) with a reason.

Each arm is tuned on its first matrix cell (first seed). Every trial is an ordinary run
dir ``<tune dir>/trials/<arm>-t<NNN>-<hash>``; the Optuna study (one per arm) lives in
``<tune dir>/study.sqlite``, so a killed tune continues with ``--resume``: trials that were
running are marked failed (their dirs set aside as ``*.incomplete-*``) and only the missing
trials run. The k-th finished trial of an arm draws from a sampler seeded by (seed, arm,
k), so a resumed tune proposes what an uninterrupted one would. Each trial reports its per-epoch
validation metric (what the trainer logs with ``run.log(step, "valid", ...)``, caught
through the run's reporter) to the pruner; a pruned trial's result.json says
``"status": "pruned"``. ``then_batch`` reruns each arm's best config over the recipe's
matrix in ``<tune dir>/final`` and records every arm's trial and pruned counts in the
batch meta (``batch.json`` ``meta.tune``).
"""

from __future__ import annotations

from pk.core.tune.spec import (
    FINAL_DIR,
    KINDS,
    PRUNERS,
    SAMPLERS,
    STUDY_FILE,
    TRIALS_DIR,
    TUNE_KEYS,
    Param,
    TunePlan,
    TuneSpec,
    batch_part,
    literal,
    load_tune,
    parse_space,
    parse_tune,
    tune_dir_for,
    with_params,
)
from pk.core.tune.study import (
    LocalPool,
    Pruned,
    RayTrialPool,
    TrialReporter,
    arm_summary,
    check_equal_effort,
    effort_lines,
    final_spec,
    load_summary,
    objective,
    plan_record,
    run_tune,
    storage_url,
    trial_task,
)

__all__ = [
    "FINAL_DIR", "KINDS", "PRUNERS", "SAMPLERS", "STUDY_FILE", "TRIALS_DIR", "TUNE_KEYS", "LocalPool", "Param",
    "Pruned", "RayTrialPool", "TrialReporter", "TunePlan", "TuneSpec", "arm_summary", "batch_part",
    "check_equal_effort", "effort_lines", "final_spec", "literal", "load_summary", "load_tune", "objective",
    "parse_space", "parse_tune", "plan_record", "run_tune", "storage_url", "trial_task", "tune_dir_for",
    "with_params",
]
