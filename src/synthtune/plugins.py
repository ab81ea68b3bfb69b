"""The plugin API: one registration call per concept, for built-ins and third parties alike.

Each concept has a :class:`~synthtune.registry.Registry` and a ``register_<concept>`` call in
the shape of PEFT's ``register_peft_method``: a name, the implementation (a factory, a spec
or a function) and, where the concept has a recipe section of its own, the pydantic model that
validates it. A third-party distribution declares its modules under the entry-point group of
the concept; synthtune imports such a module only when a recipe names what it registers::

    # pyproject.toml of a plugin
    [project.entry-points."synthtune.backends"]
    echo = "my_plugin.backend"          # a module that calls register_backend("echo", ...)

    # my_plugin/backend.py
    from synthtune.plugins import register_backend
    register_backend("echo", create_echo, config=EchoConfig)

Groups: ``synthtune.backends``, ``synthtune.image_backends``, ``synthtune.strategies``,
``synthtune.samplers``, ``synthtune.rule_packs``, ``synthtune.extractors``,
``synthtune.feature_spaces``, ``synthtune.distances``, ``synthtune.methods``,
``synthtune.tasks``, ``synthtune.suites``, ``synthtune.export_formats``,
``synthtune.policies``, ``synthtune.quality_filters``. docs/architecture.md says what each
concept's implementation must provide.

This module imports nothing heavy: the recipe is validated against these names (built-ins
are declared here lazily, by module) without importing torch, peft or an HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.registry import Registry

BACKENDS: Registry[Any] = Registry("generation backend", "synthtune.backends")
IMAGE_BACKENDS: Registry[Any] = Registry("image backend", "synthtune.image_backends")
AUDIO_BACKENDS: Registry[Any] = Registry("audio backend", "synthtune.audio_backends")
STRATEGIES: Registry[Any] = Registry("generation strategy", "synthtune.strategies")
SLOT_SAMPLERS: Registry[Any] = Registry("slot sampler", "synthtune.samplers")
RULE_PACKS: Registry[Path] = Registry("rule pack", "synthtune.rule_packs")
EXTRACTORS: Registry[Any] = Registry("rule extractor", "synthtune.extractors")
FEATURE_SPACES: Registry[Any] = Registry("feature space", "synthtune.feature_spaces")
DISTANCES: Registry[Any] = Registry("distance metric", "synthtune.distances")
METHODS: Registry[Any] = Registry("training method", "synthtune.methods")
TASKS: Registry[Any] = Registry("training task", "synthtune.tasks")
SUITES: Registry[Any] = Registry("evaluation suite", "synthtune.suites")
EXPORT_FORMATS: Registry[Any] = Registry("export format", "synthtune.export_formats")
POLICIES: Registry[Any] = Registry("bandit policy", "synthtune.policies")
QUALITY_FILTERS: Registry[Any] = Registry("quality filter", "synthtune.quality_filters")


@dataclass(frozen=True)
class QualityFilter:
    """A tier of the quality stage. ``run(ctx, records)`` scores and rejects records in
    place (``record.reject(reason)``; an accepted record is ``status == "accepted"``);
    ``enabled(recipe)`` says whether the recipe turns it on; tiers run by ascending ``order``
    (built-ins: heuristics 10, image 20, dedup 30, decontam 40, fluency 50, rules 60, judge
    70). A plugin's filter runs when the recipe lists it in ``quality.filters``."""

    order: float
    run: Callable[[Any, list[Any]], None]
    enabled: Callable[[Any], bool] = lambda recipe: True


ALL: dict[str, Registry[Any]] = {
    "backend": BACKENDS,
    "image backend": IMAGE_BACKENDS,
    "audio backend": AUDIO_BACKENDS,
    "strategy": STRATEGIES,
    "sampler": SLOT_SAMPLERS,
    "rule pack": RULE_PACKS,
    "extractor": EXTRACTORS,
    "feature space": FEATURE_SPACES,
    "distance": DISTANCES,
    "method": METHODS,
    "task": TASKS,
    "suite": SUITES,
    "export format": EXPORT_FORMATS,
    "policy": POLICIES,
    "quality filter": QUALITY_FILTERS,
}


# --------------------------------------------------------------------------- registration
def register_backend(name: str, factory: Callable[..., Any], *, config: type) -> None:
    """A text generation backend: ``factory(config_section, resolve_model) -> Backend`` (see
    :mod:`synthtune.llm.backends.base`); ``config`` validates ``generate.backend`` (its
    ``type`` field is ``Literal[name]``)."""
    BACKENDS.register(name, factory, config=config)


def register_image_backend(name: str, factory: Callable[..., Any], *, config: type) -> None:
    """An image backend (``synthtune.vision.image_backends``), used with ``strategy: image``."""
    IMAGE_BACKENDS.register(name, factory, config=config)


def register_audio_backend(name: str, factory: Callable[..., Any], *, config: type) -> None:
    """An audio backend (``synthtune.audio.backends``), used with ``strategy: audio``."""
    AUDIO_BACKENDS.register(name, factory, config=config)


def register_strategy(name: str, factory: Callable[..., Any], *, config: type) -> None:
    """A generation strategy (``synthtune.generate.strategies.base.Strategy``)."""
    STRATEGIES.register(name, factory, config=config)


def register_sampler(name: str, sampler: Callable[..., Any], *, config: type) -> None:
    """A slot sampler: ``sampler(spec, rng, context) -> value`` (synthtune.templates);
    ``config`` validates the slot, a pydantic model with a field ``name`` (the key that
    selects the sampler in a recipe's ``slots:``)."""
    SLOT_SAMPLERS.register(name, sampler, config=config)


def register_rule_pack(name: str, path: str | Path) -> None:
    """A rules YAML file usable as ``quality.rules: [pack:<name>]``."""
    RULE_PACKS.register(name, Path(path))


def register_extractor(name: str, model: type) -> None:
    """A rule extractor: a pydantic model with a field ``name`` (what selects it in a rule's
    ``extract:`` entry) and ``extract(payload) -> value | None``; the model is also the
    entry's config."""
    EXTRACTORS.register(name, model, config=model)


def register_feature_space(name: str, space: type) -> None:
    """A feature space for distribution distances (``distribution.features.TextFeatures``)."""
    FEATURE_SPACES.register(name, space)


def register_distance(name: str, metric: Callable[..., Any]) -> None:
    """A distribution distance ``metric(x, y, seed) -> float`` (distribution.distances)."""
    DISTANCES.register(name, metric)


def register_method(name: str, method: Any) -> None:
    """A training method (``synthtune.train.methods.TrainingMethod``)."""
    METHODS.register(name, method)


def register_task(name: str, spec: Any) -> None:
    """A training task (``synthtune.train.tasks.TaskSpec``): loading, encoding, collation,
    metrics, and the hooks the evaluate and export stages call."""
    TASKS.register(name, spec)


def register_suite(name: str, suite: Any) -> None:
    """An evaluation suite (``synthtune.evaluate.suites.Suite``)."""
    SUITES.register(name, suite)


def register_export_format(name: str, formatter: Callable[..., Any]) -> None:
    """A dataset export format: ``formatter(record) -> dict`` (one JSONL row)."""
    EXPORT_FORMATS.register(name, formatter)


def register_quality_filter(name: str, spec: QualityFilter) -> None:
    """A quality tier (:class:`QualityFilter`)."""
    QUALITY_FILTERS.register(name, spec)


def register_policy(name: str, policy: Any) -> None:
    """An arm-selection policy of the evolve loop (``synthtune.evolve.bandit.Policy``)."""
    POLICIES.register(name, policy)


# --------------------------------------------------------------------------- built-ins
# Declared by module, so validating a recipe imports none of them (the config models are
# light); each module registers its names through the calls above when it is first used.
def _declare(registry: Registry[Any], module: str, names: list[str]) -> None:
    for name in names:
        registry.register_lazy(name, f"synthtune.{module}:{name}")


def _declare_builtins() -> None:
    from synthtune.config import generate as g

    for name, module, model in [
        ("template", "llm.backends.template", g.TemplateBackendConfig),
        ("transformers", "llm.backends.transformers", g.TransformersBackendConfig),
        ("openai", "llm.backends.openai_compat", g.OpenAIBackendConfig),
        ("vllm", "llm.backends.vllm", g.VLLMBackendConfig),
    ]:
        BACKENDS.register_lazy(name, f"synthtune.{module}:{name}", config=model)
    for name, module, model in [
        ("procedural", "vision.image_backends", g.ProceduralBackendConfig),
        ("diffusers", "vision.diffusion", g.DiffusersBackendConfig),
    ]:
        IMAGE_BACKENDS.register_lazy(name, f"synthtune.{module}:{name}", config=model)
    for name, module, model in [
        ("machine-sound", "audio.backends", g.MachineSoundBackendConfig),
        ("espeak", "audio.backends", g.EspeakBackendConfig),
    ]:
        AUDIO_BACKENDS.register_lazy(name, f"synthtune.{module}:{name}", config=model)
    for name, module, model in [
        ("template-fill", "template_fill", g.TemplateFillStrategy),
        ("self-instruct", "self_instruct", g.SelfInstructStrategy),
        ("evol-instruct", "evol_instruct", g.EvolInstructStrategy),
        ("doc-qa", "doc_qa", g.DocQAStrategy),
    ]:
        STRATEGIES.register_lazy(
            name, f"synthtune.generate.strategies.{module}:{name}", config=model
        )
    STRATEGIES.register_lazy("image", "synthtune.vision.image_strategy:image", g.ImageStrategy)
    STRATEGIES.register_lazy("audio", "synthtune.audio.strategy:audio", g.AudioStrategy)
    for name, model in g.SLOT_MODELS.items():
        SLOT_SAMPLERS.register_lazy(name, f"synthtune.templates:{name}", config=model)
    for pack in sorted((Path(__file__).parent / "rules" / "packs").glob("*.yaml")):
        RULE_PACKS.register(pack.stem, pack)
    _declare(EXTRACTORS, "rules", ["regex", "keywords", "json_path"])
    _declare(FEATURE_SPACES, "distribution.features", ["tfidf", "embedding"])
    _declare(FEATURE_SPACES, "vision.embed", ["clip", "pixels"])
    _declare(FEATURE_SPACES, "audio.embed", ["logmel"])
    _declare(DISTANCES, "distribution.distances", ["mmd_rbf", "sliced_wasserstein"])
    _declare(
        METHODS,
        "train.methods",
        ["full", "freeze", "lora", "dora", "qlora", "prefix", "prompt", "ptuning", "ia3"],
    )
    _declare(TASKS, "text_tasks", ["causal_lm", "classification"])
    _declare(TASKS, "vision.task", ["clip"])
    _declare(TASKS, "audio.task", ["audio"])
    for module, names in [
        ("evaluate.perplexity", ["perplexity"]),
        ("evaluate.generation", ["generation"]),
        ("evaluate.compliance", ["rules"]),
        ("evaluate.forgetting", ["forgetting"]),
        ("evaluate.harness", ["lm_eval"]),
        ("evaluate.classification", ["classification"]),
        ("vision.images_suite", ["images"]),
        ("audio.suite", ["audio"]),
    ]:
        _declare(SUITES, module, names)
    _declare(EXPORT_FORMATS, "export.formats", ["openai", "alpaca", "sharegpt"])
    _declare(POLICIES, "evolve.bandit", ["thompson", "ucb", "uniform"])
    _declare(
        QUALITY_FILTERS,
        "quality.stage",
        ["heuristics", "dedup", "decontam", "fluency", "rules", "judge"],
    )
    _declare(QUALITY_FILTERS, "vision.quality_tier", ["image"])
    _declare(QUALITY_FILTERS, "audio.quality_tier", ["audio"])


_declare_builtins()
