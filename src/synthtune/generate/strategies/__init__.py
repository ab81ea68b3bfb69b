"""Generation strategies, registered by name in :data:`STRATEGIES` (``synthtune.plugins``
declares the built-ins by module; each module registers itself when first used)."""

from synthtune.generate.strategies.base import STRATEGIES, Output, Strategy, WorkItem

__all__ = ["STRATEGIES", "Output", "Strategy", "WorkItem"]
