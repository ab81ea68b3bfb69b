"""audio: each item's rendered prompt is a description or the words to speak; an audio
backend makes the clip.

The record is an ordinary chat payload plus media: the text is the user turn (a system turn
and an assistant reply are added when the template has them), the label is the template's
``label`` or else the class the backend made, and ``media`` holds the clip (path, sample
rate, seconds). Clips are 16-bit PCM WAV files named by the hash of their bytes under
``generate/audio/``, so a clip made again after a resume lands on the same file.
"""

from __future__ import annotations

import hashlib
from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.config.generate import AudioStrategy
from synthtune.generate.strategies.base import Output, WorkItem, plan_template_items
from synthtune.llm.backends.base import GenerationResult
from synthtune.llm.engine import GenerationEngine
from synthtune.records import Record
from synthtune.templates import request_rng

AUDIO_DIR = "generate/audio"


def audio_seed(seed: int, index: int) -> int:
    """The seed of item ``index``'s clip: ``(recipe seed, index)`` only."""
    return request_rng(seed, index, "audio").getrandbits(63)


class AudioSynthesis:
    name = "audio"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._backend: Any = None

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return 1, 0  # one clip, no prompt tokens billed

    def _backend_for(self, engine: GenerationEngine) -> Any:
        if self._backend is None:
            from synthtune.audio.backends import create_audio_backend

            self._backend = create_audio_backend(
                self.recipe.generation.backend, engine.resolve_model
            )
        return self._backend

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        from synthtune.audio.backends import AudioRequest

        requests = [
            AudioRequest(
                it.key, str(it.render()["prompt"]), it.slots, audio_seed(self.recipe.seed, it.index)
            )
            for it in items
        ]
        results = self._backend_for(engine).render(requests)
        engine.account(
            [
                GenerationResult(
                    text=None, error=r.error or (None if r.wave is not None else "no clip")
                )
                for r in results
            ]
        )
        return [
            [self._output(item, request.seed, result)]
            for item, request, result in zip(items, requests, results, strict=True)
        ]

    def _output(self, item: WorkItem, seed: int, result: Any, folder: str = AUDIO_DIR) -> Output:
        from synthtune.audio.wav import wav_bytes

        rendered = item.render()
        messages = item.messages()
        if rendered["response"]:
            messages.append({"role": "assistant", "content": str(rendered["response"])})
        label = rendered["label"] or result.label
        lineage = {"audio_seed": seed, **result.lineage}
        if result.error is not None or result.wave is None:
            return Output(messages, result.error or "audio: no clip", lineage, label)
        data = wav_bytes(result.wave, result.sample_rate)
        path = f"{folder}/{hashlib.sha256(data).hexdigest()[:16]}.wav"
        media = {
            "type": "audio",
            "path": path,
            "sample_rate": result.sample_rate,
            "seconds": round(len(result.wave) / result.sample_rate, 4),
        }
        return Output(messages, None, lineage, label, media=[media], files={path: data})


plugins.register_strategy("audio", AudioSynthesis, config=AudioStrategy)
