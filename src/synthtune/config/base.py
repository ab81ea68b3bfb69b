"""Shared pieces of the recipe models: strict base model and recipe-relative paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic.functional_validators import AfterValidator


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
    ``json_schema_extra={"fingerprint": "when_set"}`` that hold their default.

    Such fields were added after runs existed: at their default they change nothing, so they
    leave a stage's fingerprint as it was and upgrading synthtune does not re-run completed
    stages. Set to anything else, they enter the fingerprint like every other field.
    """
    dump: dict[str, Any] = model.model_dump(mode="json")
    _drop_unset_late_fields(model, dump)
    return dump


def _drop_unset_late_fields(model: Any, dump: Any) -> None:
    if isinstance(model, BaseModel) and isinstance(dump, dict):
        for name, info in type(model).model_fields.items():
            key = info.alias if info.alias and info.alias in dump else name
            if key not in dump:
                continue
            value = getattr(model, name)
            extra = info.json_schema_extra
            late = isinstance(extra, dict) and extra.get("fingerprint") == "when_set"
            if late and value == info.get_default(call_default_factory=True):
                del dump[key]
                continue
            _drop_unset_late_fields(value, dump[key])
    elif isinstance(model, list | tuple) and isinstance(dump, list):
        for item, sub in zip(model, dump, strict=False):
            _drop_unset_late_fields(item, sub)
    elif isinstance(model, dict) and isinstance(dump, dict):
        for key, item in model.items():
            if str(key) in dump:
                _drop_unset_late_fields(item, dump[str(key)])
