"""audio: each item's rendered prompt is a description or the words to speak; an audio
backend makes the clip.

The record is an ordinary chat payload plus media (``generate.strategies.base.MediaSynthesis``):
the text is the user turn (a system turn and an assistant reply are added when the template
has them), the label is the template's ``label`` or else the class the backend made, and
``media`` holds the clip (path, sample rate, seconds). Clips are 16-bit PCM WAV files named by
the hash of their bytes under ``generate/audio/``, so a clip made again after a resume lands
on the same file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from synthtune import plugins
from synthtune.config.generate import AudioStrategy
from synthtune.generate.strategies.base import MediaSynthesis, WorkItem

AUDIO_DIR = "generate/audio"


class AudioSynthesis(MediaSynthesis):
    name = "audio"
    kind = "audio"
    missing = "audio: no clip"
    folder = AUDIO_DIR

    def create_backend(self, resolve_model: Callable[[str], str]) -> Any:
        from synthtune.audio.backends import create_audio_backend

        return create_audio_backend(self.recipe.generation.backend, resolve_model)

    def request(self, item: WorkItem, seed: int) -> Any:
        from synthtune.audio.backends import AudioRequest

        return AudioRequest(item.key, str(item.render()["prompt"]), item.slots, seed)

    def made(self, result: Any) -> bool:
        return result.wave is not None

    def media(self, result: Any, folder: str) -> tuple[dict[str, Any], dict[str, bytes]]:
        from synthtune.audio.wav import wav_bytes

        data = wav_bytes(result.wave, result.sample_rate)
        path = f"{folder}/{hashlib.sha256(data).hexdigest()[:16]}.wav"
        media = {
            "type": "audio",
            "path": path,
            "sample_rate": result.sample_rate,
            "seconds": round(len(result.wave) / result.sample_rate, 4),
        }
        return media, {path: data}


plugins.register_strategy("audio", AudioSynthesis, config=AudioStrategy)
