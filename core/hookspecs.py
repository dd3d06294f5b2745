"""Hook specifications of the ``pk`` pluggy project.

Every registration hook receives one argument, ``register`` (a :class:`Register`), and must
only call it: no work, no heavy imports. ``register`` has the signature::

    register(name, target, *, config=None, summary="", tasks=(), paper=None, tags=(), accepts=())

- ``name``: lowercase kebab-case, unique within its kind (models, datasets, ...).
- ``target``: a lazy ``"module:attr"`` string (preferred: nothing is imported until the
  component is used) or a callable. The target is the component's *builder*; its
  signature per kind is given in each hook below and in :mod:`pk.core.contracts`.
- ``config``: a dataclass *class* whose fields (with defaults and type hints of int,
  float, str, bool, lists of those or ``X | None``) are the component's parameters. It
  must live in a light module (the plugin's entry module is fine).
- ``summary``: one line for ``pk list``.
- ``tasks``: task ids the component supports (see :mod:`pk.core.tasks`); the core refuses
  a model/dataset/trainer/evaluator combination that shares no task before importing torch.
- ``paper``: ``{"title": ..., "year": ..., "url": ...}``.
- ``tags``: free-form labels (``"baseline"``, ``"method"``...).
- ``accepts``: the other sections the builder consumes, from ``("calibrator", "aggregator")``:
  a model that takes the run's calibrator declares ``accepts=("calibrator",)`` and gets it as
  the ``calibrator`` keyword; a trainer or evaluator that takes the aggregator likewise. A
  configured section that no builder in the run accepts is a ConfigError, never ignored.

Calling ``register`` with bad arguments raises ``pk.core.errors.RegistrationError``; the
plugin is then reported as failed and everything it registered is rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pk.core import hookspec


class Register(Protocol):
    """The ``register`` callback each ``pk_register_*`` hook receives.

    :param name: lowercase kebab-case, unique within the hook's kind.
    :param target: the builder, as a lazy ``"module:attr"`` string or a callable.
    :param config: a dataclass class of the component's parameters (every field defaulted;
        ranges in ``field(metadata={"ge": ..., "gt": ..., "le": ..., "lt": ...})``).
    :param summary: one line for ``pk list``.
    :param tasks: task ids the component supports.
    :param paper: ``{"title": ..., "year": ..., "url": ...}``.
    :param tags: free-form labels.
    :param accepts: sections the builder consumes besides its own (``"calibrator"``,
        ``"aggregator"``).
    :raises RegistrationError: on any bad argument (the plugin is then rolled back).
    """

    def __call__(
        self,
        name: str,
        target: str | Callable[..., Any],
        *,
        config: type | None = None,
        summary: str = "",
        tasks: Iterable[str] = (),
        paper: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
        accepts: Iterable[str] = (),
    ) -> None: ...


@hookspec
def pk_register_models(register: Register) -> None:
    """Register model builders ``builder(config, info, **extras) -> torch.nn.Module``.

    ``info`` is the dataset's :class:`pk.core.contracts.DatasetInfo`. If the builder
    accepts a ``calibrator`` keyword, the run's configured calibrator (or ``None``) is
    passed. The module must implement ``loss(batch) -> scalar tensor`` and
    ``predict(batch) -> tensor`` with the output shape of its task, perform no I/O in
    its constructor and keep no global state; ``state_dict`` must round-trip.
    """


@hookspec
def pk_register_datasets(register: Register) -> None:
    """Register dataset builders ``builder(config, *, root, seed) -> DataBundle``.

    ``root`` is a writable cache directory (:func:`pk.core.paths.data_dir`); ``seed`` is
    the run seed. Every dataset must offer a small seeded synthetic or bundled default
    (its config's default values), so that it builds offline. Splits are disjoint and
    deterministic under the seed.
    """


@hookspec
def pk_register_trainers(register: Register) -> None:
    """Register trainer builders ``builder(config) -> Trainer``.

    A trainer implements ``fit(model, data, run) -> dict[str, float]`` and
    ``evaluate(model, data, split, run) -> dict[str, float]``; it logs only through
    ``run.log`` and checkpoints only through ``run.save_checkpoint``. A trainer with
    ``resumable = True`` continues from ``run.latest_checkpoint()`` when it is not None.
    """


@hookspec
def pk_register_aggregators(register: Register) -> None:
    """Register aggregator builders ``builder(config, context=None) -> Aggregator``.

    ``aggregate(global_state, updates, state=None) -> (new_global_state, new_state)``
    where ``updates`` is a sequence of ``(state_dict, weight, meta)``. Aggregators never
    mutate their inputs, raise ``ValueError`` on empty updates or non-positive total
    weight, and return the model itself when every update is identical.
    """


@hookspec
def pk_register_calibrators(register: Register) -> None:
    """Register calibrator builders ``builder(config) -> Calibrator``.

    A calibrator acts on attention: ``adjust_scores(scores, mask) -> scores`` before the
    softmax and/or ``calibrate(attn, mask) -> attn`` after it. Final weights keep their
    shape, are non-negative, sum to 1 over unmasked keys and are exactly 0 on masked ones.
    """


@hookspec
def pk_register_evaluators(register: Register) -> None:
    """Register evaluator builders ``builder(config) -> Evaluator``.

    ``evaluate(model, data, run) -> dict[str, float]``; ``metrics`` declares each
    metric's ``(low, high, higher_is_better)``. Deterministic under ``run.seed``.
    """


@hookspec
def pk_environment_info() -> dict[str, Any]:
    """Return extra ``name -> value`` lines for ``pk doctor`` and each run's env.json.

    Must be cheap and must not import torch.
    """
    return {}
