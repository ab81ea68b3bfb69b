"""Multi-process runs (``torchrun`` / ``accelerate launch``): who does what.

Only the train stage runs on every process (the transformers Trainer does DDP through
accelerate: NCCL on GPUs, gloo on CPUs); every other stage, and all bookkeeping of the run
directory, happens on the main process while the others wait at a barrier. On a single
process all of this is a no-op.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
