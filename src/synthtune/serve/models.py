"""What ``synthtune serve`` serves: a model folder or id, a run's tuned model, extra adapters.

Every served model shares one base in memory. A run directory serves its trained adapter
under the run's name and the base it was trained from under the base's name; ``--adapter
name=path`` adds LoRA adapters on the same base, each selectable by its name as the request's
``model``. A run trained with a full fine-tune (no adapter) serves that model alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.errors import SynthtuneError
from synthtune.models import load_causal_lm, pick_device
from synthtune.serve.generation import Generator


class ServeError(SynthtuneError):
    """The model, run directory or adapter to serve cannot be found or loaded."""


@dataclass
class ServedModels:
    """The names a request may ask for, and the generator that runs them."""

    names: list[str]
    generator: Generator
    created: int = field(default_factory=lambda: int(time.time()))

    def __contains__(self, name: object) -> bool:
        return name in self.names


@dataclass(frozen=True)
class ServeSource:
    """A model to load (folder or hub id) under ``name``, plus adapters by name."""

    model: str
    name: str
    adapters: dict[str, Path]


def _find_base(run_dir: Path, base_path: str) -> str:
    """The base a run trained from: the recorded path, tried as given and against the run's
    parent folders (the path is relative to wherever training ran); else a hub id."""
    recorded = Path(base_path)
    candidates = [recorded, *(parent / recorded for parent in run_dir.resolve().parents)]
    candidates.append(run_dir.parent / "models" / recorded.name)
    for path in candidates:
        if (path / "config.json").exists():
            return str(path)
    if recorded.is_absolute() or base_path.startswith("."):
        raise ServeError(
            f"{run_dir}/train/metrics.json: base model {base_path} not found; serve the base "
            "folder directly with --adapter NAME=RUN/train/adapter"
        )
    return base_path


def resolve_source(model_or_run: str, adapters: dict[str, Path] | None = None) -> ServeSource:
    """Turn the CLI argument into a model to load and the adapters to put on it."""
    adapters = dict(adapters or {})
    for name, path in adapters.items():
        if not (Path(path) / "adapter_config.json").exists():
            raise ServeError(f"--adapter {name}={path}: no adapter_config.json in that folder")
    path = Path(model_or_run)
    if (path / "config.json").exists():
        return ServeSource(str(path), path.resolve().name, adapters)
    trained = path / "train" / "adapter"
    if trained.is_dir():
        run_name = path.resolve().name
        metrics_file = path / "train" / "metrics.json"
        if not (trained / "adapter_config.json").exists():
            return ServeSource(str(trained), run_name, adapters)
        if not metrics_file.exists():
            raise ServeError(f"{path}: train/metrics.json missing; run the train stage again")
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        if metrics.get("task", "causal_lm") != "causal_lm":
            raise ServeError(f"{path}: trained a {metrics['task']} model, not a causal LM")
        base = _find_base(path, str(metrics["base_path"]))
        base_name = str(metrics.get("base") or Path(base).name)
        return ServeSource(base, base_name, {run_name: trained, **adapters})
    if path.exists():
        raise ServeError(
            f"{model_or_run}: neither a model folder (config.json) nor a run directory "
            "with train/adapter; pass a model folder, a hub id or a trained run"
        )
    from synthtune.model_names import resolve_name  # a packaged model's folder, as in train

    return ServeSource(resolve_name(model_or_run), model_or_run, adapters)


def _selector(model: Any, base_name: str) -> Callable[[str], AbstractContextManager[Any]]:
    from peft import PeftModel

    def select(name: str) -> AbstractContextManager[Any]:
        # a plain transformers model has set_adapter too (its peft integration): ask peft
        if not isinstance(model, PeftModel):
            return nullcontext()
        if name == base_name:
            return model.disable_adapter()
        model.set_adapter(name)
        return nullcontext()

    return select


def load_served_models(source: ServeSource, device: str = "auto") -> ServedModels:
    """Load the base once and attach every adapter to it under its name."""
    if source.name in source.adapters:
        raise ServeError(f"adapter name {source.name!r} is the base model's name; rename it")
    try:
        model, tokenizer = load_causal_lm(source.model, device=pick_device(device))
    except OSError as exc:
        raise ServeError(f"cannot load model {source.model}: {exc}") from None
    if source.adapters:
        from peft import PeftModel

        items = list(source.adapters.items())
        first, first_path = items[0]
        model = PeftModel.from_pretrained(model, str(first_path), adapter_name=first)
        for name, path in items[1:]:
            model.load_adapter(str(path), adapter_name=name)
        model.eval()
    generator = Generator(model, tokenizer, _selector(model, source.name))
    return ServedModels([source.name, *source.adapters], generator)
