"""Audio backends: a batch of texts (with their slots) -> clips with labels.

Like an image backend (``vision.image_backends``) an audio backend has its own contract and
registry, chosen by ``generate.backend.type``; the ``audio`` strategy drives it. A failure is
a result with ``error`` set, never an exception for one request, and a clip depends only on
the request (its ``seed`` included), so a resumed run makes the same clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from synthtune import plugins
from synthtune.config.generate import EspeakBackendConfig, MachineSoundBackendConfig
from synthtune.errors import SynthtuneError


@dataclass(frozen=True)
class AudioRequest:
    key: str
    text: str  # the rendered template prompt: a description, or the words to speak
    slots: dict[str, Any]
    seed: int  # from (recipe seed, item index): the clip depends on nothing else


@dataclass(frozen=True)
class AudioResult:
    wave: np.ndarray | None  # float32 mono in [-1, 1]
    sample_rate: int
    label: str | None = None  # the class actually made, when the backend knows it
    error: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)


class AudioBackend(Protocol):
    name: str
    model: str

    def render(self, requests: list[AudioRequest]) -> list[AudioResult]: ...


AudioBackendFactory = Callable[[Any, Callable[[str], str]], AudioBackend]
AUDIO_BACKENDS = plugins.AUDIO_BACKENDS  # name -> AudioBackendFactory


def create_audio_backend(config: Any, resolve_model: Callable[[str], str]) -> AudioBackend:
    return AUDIO_BACKENDS.get(config.type)(config, resolve_model)


class MachineSoundBackend:
    """Machine sounds (``audio.machine``): slots give the spec, the rest is drawn from the
    request's seed; an unknown machine or anomaly, or a value out of range, fails that
    request with the reason."""

    name = "machine-sound"
    model = "procedural"

    def __init__(self, sample_rate: int, seconds: float) -> None:
        self.sample_rate = sample_rate
        self.seconds = seconds

    def render(self, requests: list[AudioRequest]) -> list[AudioResult]:
        return [self._one(r) for r in requests]

    def _one(self, request: AudioRequest) -> AudioResult:
        from synthtune.audio.machine import MachineSpec, render_machine

        try:
            spec = MachineSpec.from_slots(request.slots)
            wave, drawn = render_machine(
                spec, self.sample_rate, self.seconds, np.random.default_rng(request.seed)
            )
        except (ValueError, TypeError, SynthtuneError) as exc:
            return AudioResult(None, self.sample_rate, error=f"machine-sound: {exc}")
        return AudioResult(wave, self.sample_rate, spec.anomaly, lineage={"drawn": drawn})


class EspeakBackend:
    """Speech of the rendered prompt through eSpeak NG (``audio.tts``), then background noise
    and room reverberation. Slots: voice, rate (words/min, 80-450), pitch (0-99), snr_db,
    reverb (0-1); missing ones keep eSpeak's defaults and add no noise or room."""

    name = "espeak"
    model = "espeak-ng"

    def __init__(self, cfg: EspeakBackendConfig) -> None:
        from synthtune.audio.tts import tts_unavailable

        why = tts_unavailable()
        if why is not None:
            raise SynthtuneError(f"generate.backend espeak: {why}")
        self.cfg = cfg

    def render(self, requests: list[AudioRequest]) -> list[AudioResult]:
        return [self._one(r) for r in requests]

    def _one(self, request: AudioRequest) -> AudioResult:
        from synthtune.audio.machine import add_noise, add_reverb, normalise
        from synthtune.audio.tts import speak

        sr = self.cfg.sample_rate
        slots = request.slots
        try:
            voice = str(slots.get("voice", self.cfg.voice))
            rate = int(slots.get("rate", 175))
            pitch = int(slots.get("pitch", 50))
            if not (80 <= rate <= 450 and 0 <= pitch <= 99):
                raise ValueError(f"rate {rate} (80-450) or pitch {pitch} (0-99) out of range")
            wave = speak(request.text, voice=voice, rate=rate, pitch=pitch, sample_rate=sr)
        except (ValueError, TypeError, OSError) as exc:
            return AudioResult(None, sr, error=f"espeak: {exc}")
        if not len(wave):
            return AudioResult(None, sr, error="espeak: the text made no sound")
        wave = wave[: int(self.cfg.max_seconds * sr)]
        rng = np.random.default_rng(request.seed)
        drawn: dict[str, Any] = {"voice": voice, "rate": rate, "pitch": pitch}
        if slots.get("snr_db") is not None:
            wave = add_noise(wave, float(slots["snr_db"]), rng)
            drawn["snr_db"] = float(slots["snr_db"])
        if slots.get("reverb") is not None:
            wave = add_reverb(wave, float(slots["reverb"]), sr, rng)
            drawn["reverb"] = float(slots["reverb"])
        return AudioResult(normalise(wave), sr, lineage={"drawn": drawn})


def _machine(config: Any, resolve_model: Callable[[str], str]) -> MachineSoundBackend:
    return MachineSoundBackend(config.sample_rate, config.seconds)


def _espeak(config: Any, resolve_model: Callable[[str], str]) -> EspeakBackend:
    return EspeakBackend(config)


plugins.register_audio_backend("machine-sound", _machine, config=MachineSoundBackendConfig)
plugins.register_audio_backend("espeak", _espeak, config=EspeakBackendConfig)
