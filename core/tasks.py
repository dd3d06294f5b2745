"""Task ids and the compatibility check between components.

A task id names what a dataset provides and what a model, trainer or evaluator consumes.
Known ids (plugins may add their own, kebab-case): ``classification`` (feature vectors or
images with class labels), ``node-classification``, ``graph-classification``,
``next-item`` (sequential recommendation), ``candidate-matching``, ``streaming-next-item``,
``continual-node-classification``, ``causal-lm``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pk.core.errors import ConfigError

KNOWN_TASKS = (
    "classification",
    "node-classification",
    "graph-classification",
    "next-item",
    "candidate-matching",
    "streaming-next-item",
    "continual-node-classification",
    "causal-lm",
)


def common_tasks(components: Mapping[str, tuple[str, Iterable[str]]]) -> set[str]:
    """Return the tasks every component supports; raise ConfigError when there is none.

    ``components`` maps a kind (``"model"``) to ``(registered name, tasks)``; a component
    that declares no tasks is taken to fit any.
    """
    shared: set[str] | None = None
    for _kind, (_name, tasks) in components.items():
        tasks = set(tasks)
        if not tasks:
            continue
        shared = tasks if shared is None else shared & tasks
    if shared is not None and not shared:
        parts = ", ".join(
            f"{kind} '{name}' does {'/'.join(sorted(tasks)) or 'any task'}"
            for kind, (name, tasks) in components.items()
        )
        raise ConfigError(
            f"these components share no task: {parts}; pick components made for the same task "
            "(`pk list` shows each one's tasks)"
        )
    return shared or set()
