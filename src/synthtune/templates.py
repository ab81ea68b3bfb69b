"""Sandboxed Jinja2 prompt templates and the random-slot samplers that fill them.

Determinism contract: the slots of request ``i`` depend only on ``(seed, i)`` and the
template config, never on how many requests ran before, so a resumed or re-ordered run
samples exactly the same values.
"""

from __future__ import annotations

import contextvars
import graphlib
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from synthtune import plugins
from synthtune.config import (
    ChoiceSlot,
    FakerSlot,
    RandIntSlot,
    SampleSlot,
    SlotSpec,
    TemplateConfig,
    TemplateSlot,
    UniformSlot,
)
from synthtune.config.generate import SLOT_MODELS
from synthtune.errors import RecipeError

# Limits of one render (a template comes from a recipe, i.e. from whoever wrote it): the
# sandbox stops attribute tricks, these stop a render from hanging or eating memory.
RENDER_SECONDS = 2.0
RENDER_CHARS = 100_000
LOOP_STEPS = 100_000  # range() iterations summed over the whole render (nested loops too)
MAX_EXPONENT = 256


class _Budget:
    def __init__(self) -> None:
        self.deadline = time.monotonic() + RENDER_SECONDS
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > LOOP_STEPS:
            raise SecurityError(f"loops ran over {LOOP_STEPS:,} range() steps")
        if self.steps % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took over {RENDER_SECONDS:g} s")


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("render_budget")


def _counted_range(*args: int) -> Iterator[int]:
    steps = range(*args)
    if len(steps) > LOOP_STEPS:
        raise SecurityError(f"range of {len(steps):,} steps (at most {LOOP_STEPS:,})")
    budget = _BUDGET.get(None)
    for value in steps:
        if budget is not None:
            budget.tick()
        yield value


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox (no unsafe attributes, no mutation) that also refuses huge powers
    and repetitions (``10 ** 10 ** 9``, ``'x' * 10 ** 9``) and counts loop steps."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        numbers = isinstance(left, int | float) and isinstance(right, int | float)
        if operator == "**" and numbers:
            if abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is over {MAX_EXPONENT}")
            if abs(left) > 1 and right * math.log10(abs(left)) > 4300:  # Python's str limit
                raise SecurityError("a power of over 4,300 digits")
        if operator == "*":
            for sized, times in ((left, right), (right, left)):
                repeats = isinstance(sized, str | list | tuple) and isinstance(times, int)
                if repeats and len(sized) * times > RENDER_CHARS:
                    raise SecurityError(f"repetition of over {RENDER_CHARS:,} items")
        return super().call_binop(context, operator, left, right)


_ENV = _LimitedSandbox(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
)
_ENV.globals["range"] = _counted_range


def render(template: jinja2.Template, values: dict[str, Any], where: str) -> str:
    """``template`` rendered with ``values`` inside the render limits, stripped. Any failure
    (an undefined name, a division by zero, a sandbox or limit refusal) is a RecipeError
    naming ``where`` (e.g. ``generate.templates[triage].prompt``)."""
    token = _BUDGET.set(budget := _Budget())
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(**values):
            size += len(chunk)
            if size > RENDER_CHARS:
                raise SecurityError(f"output over {RENDER_CHARS:,} characters")
            budget.check_time()
            out.append(chunk)
        return "".join(out).strip()
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise RecipeError(where, [f"cannot render: {type(exc).__name__}: {exc}"]) from None
    finally:
        _BUDGET.reset(token)


Sampler = Callable[[Any, random.Random, dict[str, Any]], Any]
SLOT_SAMPLERS = plugins.SLOT_SAMPLERS  # name -> Sampler


def request_rng(seed: int, index: int, salt: str = "") -> random.Random:
    digest = hashlib.sha256(f"{seed}:{index}:{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _randint(spec: RandIntSlot, rng: random.Random, ctx: dict[str, Any]) -> int:
    return rng.randint(*spec.randint)


def _uniform(spec: UniformSlot, rng: random.Random, ctx: dict[str, Any]) -> float:
    value = rng.uniform(*spec.uniform)
    return round(value, spec.round) if spec.round is not None else value


def _choice(spec: ChoiceSlot, rng: random.Random, ctx: dict[str, Any]) -> Any:
    if isinstance(spec.choice, dict):
        key = str(ctx[spec.by])  # type: ignore[index]
        if key not in spec.choice:
            raise KeyError(f"no `choice` list for {spec.by}={key!r}")
        return rng.choice(spec.choice[key])
    return rng.choices(spec.choice, weights=spec.weights, k=1)[0]


def _sample(spec: SampleSlot, rng: random.Random, ctx: dict[str, Any]) -> str:
    k = spec.k if isinstance(spec.k, int) else rng.randint(*spec.k)
    return spec.sep.join(str(v) for v in rng.sample(spec.sample, k))


@lru_cache(maxsize=16)
def _faker(locale: str) -> Any:
    from faker import Faker  # imported lazily: only recipes with faker slots pay for it

    return Faker(locale)


def _faker_slot(spec: FakerSlot, rng: random.Random, ctx: dict[str, Any]) -> Any:
    fake = _faker(spec.locale)
    fake.seed_instance(rng.getrandbits(64))
    provider = getattr(fake, spec.faker, None)
    if provider is None or not callable(provider):
        raise KeyError(f"faker has no provider {spec.faker!r}")
    return provider(**spec.args)


def _template_slot(spec: TemplateSlot, rng: random.Random, ctx: dict[str, Any]) -> str:
    return render(_compile(spec.template), ctx, "a template slot")


_BUILT_IN: dict[str, Sampler] = {
    "randint": _randint,
    "uniform": _uniform,
    "choice": _choice,
    "sample": _sample,
    "faker": _faker_slot,
    "template": _template_slot,
}
for _name, _sampler in _BUILT_IN.items():
    plugins.register_sampler(_name, _sampler, config=SLOT_MODELS[_name])


@lru_cache(maxsize=1024)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def _slot_kind(spec: SlotSpec) -> str:
    """The registered sampler whose config model validated ``spec``."""
    return SLOT_SAMPLERS.name_of_config(type(spec))


def template_variables(source: str) -> set[str]:
    return set(meta.find_undeclared_variables(_ENV.parse(source))) - set(_ENV.globals)


def _dependencies(spec: SlotSpec) -> set[str]:
    if isinstance(spec, ChoiceSlot) and spec.by:
        return {spec.by}
    if isinstance(spec, TemplateSlot):
        return template_variables(spec.template)
    return set()


@dataclass(frozen=True)
class CompiledTemplate:
    """A template checked once: slot order resolved, Jinja sources parsed."""

    config: TemplateConfig
    order: tuple[str, ...]
    kinds: dict[str, str] = field(default_factory=dict)
    provided: frozenset[str] = frozenset()  # names the strategy supplies at render time

    def sample_slots(
        self, seed: int, index: int, overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Slot values of request ``index``. Each slot draws from its own stream, keyed by
        template, slot name, seed and index: reordering or adding slots in the recipe never
        changes the values of the others.

        ``overrides`` (edge cases) replace a slot's draw; slots that depend on an overridden
        one (``age_group`` on ``age``) are derived from the override, the rest keep their draws.
        """
        fixed = overrides or {}
        values: dict[str, Any] = {}
        for name in self.order:
            if name in fixed:
                values[name] = fixed[name]
                continue
            spec = self.config.slots[name]
            rng = request_rng(seed, index, f"{self.config.id}:{name}")
            try:
                values[name] = SLOT_SAMPLERS.get(self.kinds[name])(spec, rng, values)
            except KeyError as exc:  # a `choice` keyed `by` a value it has no list for
                where = f"generate.templates[id={self.config.id}].slots.{name}"
                raise RecipeError(where, [str(exc.args[0] if exc.args else exc)]) from None
        return {name: values[name] for name in self.config.slots}

    def render(self, slots: dict[str, Any]) -> dict[str, str | None]:
        """system, prompt, response and label, rendered (None where not configured)."""
        cfg = self.config
        where = f"generate.templates[{cfg.id}]"
        fields = {"system": cfg.system, "prompt": cfg.prompt, "response": cfg.response}
        fields["label"] = cfg.label
        return {
            name: render(_compile(source), slots, f"{where}.{name}") if source else None
            for name, source in fields.items()
        }


def _branch_problems(cfg: TemplateConfig, here: str) -> list[str]:
    """A dependent choice (``by: parent``) whose parent draws from a known list must have a
    list for every value the parent can take; a missing one would fail records at random."""
    problems = []
    for name, spec in cfg.slots.items():
        if not (isinstance(spec, ChoiceSlot) and spec.by and isinstance(spec.choice, dict)):
            continue
        parent = cfg.slots.get(spec.by)
        if isinstance(parent, ChoiceSlot) and isinstance(parent.choice, list):
            values = [str(v) for v in parent.choice]
        elif isinstance(parent, ChoiceSlot) and isinstance(parent.choice, dict):
            values = [str(v) for options in parent.choice.values() for v in options]
        else:
            continue  # a computed parent (template, faker...): checked per record
        missing = sorted(set(values) - set(spec.choice), key=values.index)
        if missing:
            problems.append(
                f"{here}.slots.{name}.choice: no list for {spec.by} = "
                f"{', '.join(repr(m) for m in missing)}; add one per value of {spec.by}"
            )
    return problems


def _faker_problems(cfg: TemplateConfig, here: str) -> list[str]:
    """Faker slots name a locale and a provider that exist (checked without drawing)."""
    problems = []
    for name, spec in cfg.slots.items():
        if not isinstance(spec, FakerSlot):
            continue
        try:
            fake = _faker(spec.locale)
        except (AttributeError, ValueError, ImportError) as exc:
            problems.append(
                f"{here}.slots.{name}.locale: faker has no locale {spec.locale!r} ({exc})"
            )
            continue
        provider = getattr(fake, spec.faker, None)
        if spec.faker.startswith("_") or provider is None or not callable(provider):
            problems.append(f"{here}.slots.{name}.faker: faker has no provider {spec.faker!r}")
    return problems


def compile_template(
    cfg: TemplateConfig, where: str = "", provided: frozenset[str] = frozenset()
) -> CompiledTemplate:
    """Check a template against its slots; raise RecipeError naming the field on a problem.

    ``provided`` names variables a strategy supplies at render time (``examples``, ``chunk``).
    """
    here = where or f"generate.templates[{cfg.id}]"
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for name, spec in cfg.slots.items():
        try:
            deps = _dependencies(spec)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{here}.slots.{name}: template syntax error: {exc}")
            continue
        unknown = deps - set(cfg.slots)
        if unknown:
            problems.append(f"{here}.slots.{name}: depends on unknown slots {sorted(unknown)}")
        graph[name] = deps & set(cfg.slots)
    for part in ("system", "prompt", "response", "label"):
        source = getattr(cfg, part)
        if source is None:
            continue
        try:
            unknown = template_variables(source) - set(cfg.slots) - provided
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{here}.{part}: template syntax error: {exc}")
            continue
        if unknown:
            problems.append(f"{here}.{part}: uses undefined slots {sorted(unknown)}")
    problems += _branch_problems(cfg, here) + _faker_problems(cfg, here)
    try:
        order = tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        problems.append(f"{here}.slots: circular slot dependency {exc.args[1]}")
        order = ()
    if problems:
        raise RecipeError(here, problems)
    kinds = {name: _slot_kind(spec) for name, spec in cfg.slots.items()}
    return CompiledTemplate(config=cfg, order=order, kinds=kinds, provided=provided)
