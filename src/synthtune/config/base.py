"""Shared pieces of the recipe models: strict base model and recipe-relative paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic.functional_validators import AfterValidator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value


RecipePath = Annotated[Path, AfterValidator(_resolve_path)]
