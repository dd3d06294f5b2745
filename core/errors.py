"""Errors with stable exit codes: 1 run failed, 2 usage/config/data, 3 plugin failure."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PkError(Exception):
    """Base of pk's user-facing errors; ``str(err)`` is one line saying what and how to fix."""

    exit_code = 2


class UsageError(PkError):
    """Bad command-line usage, config, data or file (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file or override is malformed, unknown or of the wrong type."""


class DataError(UsageError):
    """A data file is missing or malformed; the message names the file (and line)."""


class CheckpointError(UsageError):
    """A checkpoint is missing, corrupt or does not fit the model."""


class RunFailed(PkError):
    """A run raised while training or evaluating (exit code 1)."""

    exit_code = 1


class PluginError(PkError):
    """A plugin failed to load or register (exit code 3)."""

    exit_code = 3


class RegistrationError(PluginError):
    """A plugin called ``register`` with invalid arguments."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
