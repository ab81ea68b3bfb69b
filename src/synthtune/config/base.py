"""Shared pieces of the recipe models: strict base model and recipe-relative paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
)
from pydantic.fields import FieldInfo
from pydantic.functional_validators import AfterValidator
from pydantic_core import core_schema


class StrictModel(BaseModel):
    # allow_inf_nan=False: a weight of .inf or a bound of .nan is an error at validate, with
    # its field path, not a crash in random.choices or a comparison that is never true
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value


RecipePath = Annotated[Path, AfterValidator(_resolve_path)]


def fingerprint_dump(model: BaseModel) -> dict[str, Any]:
    """``model.model_dump(mode="json")`` without the fields marked
    ``json_schema_extra={"fingerprint": "when_set"}`` that hold their default, and with the
    fields marked ``{"fingerprint": {"as": value}}`` (execution knobs such as concurrency,
    which change no output) replaced by that fixed value, and without the fields marked
    ``{"fingerprint": "never"}`` (execution knobs added after runs existed, such as the
    OpenAI backend's ``mode``: no key at all, so old fingerprints stay as they were).

    Such fields were added after runs existed: at their default they change nothing, so they
    leave a stage's fingerprint as it was and upgrading synthtune does not re-run completed
    stages. Set to anything else, they enter the fingerprint like every other field.
    """
    dump: dict[str, Any] = model.model_dump(mode="json")
    _drop_unset_late_fields(model, dump)
    return dump


def fingerprint_rule(info: FieldInfo) -> Any:
    """A field's ``json_schema_extra={"fingerprint": ...}`` rule ("when_set", "never",
    ``{"as": value}``), or None."""
    extra = info.json_schema_extra
    return extra.get("fingerprint") if isinstance(extra, dict) else None


def _drop_unset_late_fields(model: Any, dump: Any) -> None:
    if isinstance(model, BaseModel) and isinstance(dump, dict):
        for name, info in type(model).model_fields.items():
            key = info.alias if info.alias and info.alias in dump else name
            if key not in dump:
                continue
            value = getattr(model, name)
            rule = fingerprint_rule(info)
            if rule == "when_set" and value == info.get_default(call_default_factory=True):
                del dump[key]
                continue
            if rule == "never":  # an execution knob added late: never in a fingerprint
                del dump[key]
                continue
            if isinstance(rule, dict) and "as" in rule:  # an execution knob: a fixed value
                dump[key] = rule["as"]
                continue
            _drop_unset_late_fields(value, dump[key])
    elif isinstance(model, list | tuple) and isinstance(dump, list):
        for item, sub in zip(model, dump, strict=False):
            _drop_unset_late_fields(item, sub)
    elif isinstance(model, dict) and isinstance(dump, dict):
        for key, item in model.items():
            if str(key) in dump:
                _drop_unset_late_fields(item, dump[str(key)])


# --------------------------------------------------------------------------- plugin-backed fields
# The recipe schema is assembled from the registries (synthtune.plugins) when a recipe is
# validated, not written out here: a plugin's name and its config model are checked with field
# paths exactly like a built-in's. The registries are imported inside the validators (at
# validation time) so config/ does not depend on plugins/ at import time.
def _registry(concept: str) -> Any:
    from synthtune.plugins import ALL

    return ALL[concept]


def _known(registry: Any) -> str:
    return ", ".join(registry.names()) or "none"


@dataclass(frozen=True)
class RegisteredName:
    """A field that names something registered under ``concept`` (``train.task``...): the
    check runs against the registry (built-ins and installed plugins); the JSON Schema lists
    the names registered when the schema is printed."""

    concept: str

    def _check(self, value: str) -> str:
        registry = _registry(self.concept)
        if value not in registry:
            raise ValueError(f"unknown {registry.kind} {value!r}; known: {_known(registry)}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        out["enum"] = _registry(self.concept).names()
        return out


class _RegisteredSection:
    """What the two section kinds below share: the value is validated with the config model
    registered for the name it selects (``_validate``), dumped with every field of that
    model, and described in the JSON Schema as the ``oneOf`` of the registered models."""

    def _concepts(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _validate(self, value: Any, handler: Any, info: ValidationInfo) -> Any:
        raise NotImplementedError

    def models(self) -> list[Any]:
        found = []
        for concept in self._concepts():
            registry = _registry(concept)
            found += [registry.config(n) for n in registry.names()]
        return [m for m in found if m is not None]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.with_info_wrap_validator_function(
            self._validate,
            handler(source),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v, info: v.model_dump(mode=info.mode, by_alias=info.by_alias),
                info_arg=True,
            ),
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {"oneOf": [handler(m.__pydantic_core_schema__) for m in self.models()]}


@dataclass(frozen=True)
class PluginSection(_RegisteredSection):
    """A section whose ``type`` picks the config model registered for that name in the
    ``concepts`` registries (``generate.backend``, ``generate.strategy``): validated with that
    model, errors carry the section's field path, dumps carry every field of the chosen model.
    The JSON Schema is the ``oneOf`` of the registered models."""

    concepts: tuple[str, ...]
    key: str = "type"

    def _concepts(self) -> tuple[str, ...]:
        return self.concepts

    def _model(self, name: Any) -> Any:
        registries = [_registry(c) for c in self.concepts]
        for registry in registries:
            if isinstance(name, str) and name in registry:
                return registry.config(name)
        known = ", ".join(sorted(n for r in registries for n in r.names()))
        kind = " or ".join(r.kind for r in registries)
        if name is None:
            raise ValueError(f"{self.key}: required, the {kind} to use; known: {known}")
        raise ValueError(f"{self.key}: unknown {kind} {name!r}; known: {known}")

    def _validate(self, value: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping with a `{self.key}` (got {value!r})")
        model = self._model(value.get(self.key))
        if model is None:  # registered without a config model: only the type is accepted
            raise ValueError(f"{value.get(self.key)!r} was registered without a config model")
        return model.model_validate(value, context=info.context)


@dataclass(frozen=True)
class KeyedSection(_RegisteredSection):
    """A section whose kind is the one key in it that names something registered under
    ``concept`` (a slot's ``choice:``/``randint:``, a rule extractor's ``regex:``, a plugin's
    key): validated with the config model registered for that name, errors with the
    section's field path."""

    concept: str
    what: str

    def _concepts(self) -> tuple[str, ...]:
        return (self.concept,)

    def _validate(self, value: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel):
            return value
        registry = _registry(self.concept)
        if not isinstance(value, dict):
            raise ValueError(f"{self.what} is a mapping with one of: {_known(registry)}")
        found = [k for k in value if isinstance(k, str) and k in registry]
        if len(found) != 1:
            raise ValueError(
                f"{self.what} needs exactly one {registry.kind} key: {_known(registry)}"
                + (f" (got {', '.join(found)})" if found else "")
            )
        model = registry.config(found[0])
        if model is None:
            raise ValueError(f"{registry.kind} {found[0]!r} was registered without a config model")
        return model.model_validate(value, context=info.context)
