"""A ``word_count`` extractor and the ``brevity`` rule pack that uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from synthtune.plugins import register_extractor, register_rule_pack
from synthtune.records import Payload


class WordCount(BaseModel):
    """``{n: {word_count: response}}``: the number of whitespace-separated words."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    word_count: Literal["prompt", "response", "all"]

    def extract(self, payload: Payload) -> int:
        return len(payload.text(self.word_count).split())


register_extractor("word_count", WordCount)
register_rule_pack("brevity", Path(__file__).parent / "brevity.yaml")
