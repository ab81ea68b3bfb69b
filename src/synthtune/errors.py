"""Exception types a user can act on: each says what failed, where, and what to do next."""

from __future__ import annotations


class SynthtuneError(Exception):
    """Base class: the CLI turns these into a one-line message and a non-zero exit."""

    exit_code = 1


class RecipeError(SynthtuneError):
    """The recipe file is missing, unreadable or invalid. Raised before any work starts."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid recipe {path}:\n{lines}")


class BackendError(SynthtuneError):
    """A generation backend failed in a way retrying will not fix (bad model id, bad reply)."""


class StageError(SynthtuneError):
    """A stage cannot run: its inputs are missing or inconsistent."""


class RegistryError(SynthtuneError):
    """A name was registered twice, or looked up but never registered."""
