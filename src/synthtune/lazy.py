"""Helpers that keep heavy libraries out of import time.

``synthtune validate``, ``status``, ``report`` and ``--help`` must start in well under two
seconds on 2 cores; importing torch alone takes 1-2.5 s there and transformers 3-5 s. So
modules import torch, transformers, peft, scikit-learn and friends inside the functions that
use them (tests/test_cold_start.py holds the line), and decorators that would touch torch at
import time come from here instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def inference_mode(fn: F) -> F:
    """``@torch.inference_mode()`` that imports torch at the first call, not at import."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
