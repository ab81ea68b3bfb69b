"""The audio tier: checks of the records that carry sound clips.

Per clip: duration bounds, clipping (share of samples at full scale), silence (share of
20 ms frames below ``silence_db``) and an SNR estimate (mean frame power over the power of
the quietest 10 % of frames: the noise floor that speech pauses reveal). Every measure lands
in ``quality.audio`` and every failed bound rejects the clip with the measure and the bound
in its reason. A clip that cannot be read is rejected with the reason, never a crash.

A round-trip check by a speech recogniser is not run: no offline recogniser with its model
ships in a PyPI package, so ``quality.audio`` records ``asr: "skipped: no offline
recogniser"`` on speech clips rather than pretending to check.

Clips are read one at a time, so a large run does not have to fit in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthtune import plugins
from synthtune.config.generate import is_audio_backend
from synthtune.config.quality import AudioQualityConfig
from synthtune.context import StageContext
from synthtune.records import Record

FRAME_SECONDS = 0.02
FULL_SCALE = 0.999


def measure_clip(wave: np.ndarray, sample_rate: int, silence_db: float) -> dict[str, float]:
    """Duration, clipped share, silent-frame share and SNR estimate (dB) of one clip."""
    n = len(wave)
    frame = max(1, int(FRAME_SECONDS * sample_rate))
    usable = n - n % frame
    if usable == 0:
        return {"seconds": n / sample_rate, "clipped": 0.0, "silence": 1.0, "snr_db": 0.0}
    power = np.mean(wave[:usable].astype(np.float64).reshape(-1, frame) ** 2, axis=1)
    level = 10 * np.log10(power + 1e-12)
    floor = float(np.mean(np.sort(power)[: max(1, len(power) // 10)]))
    snr = 10 * np.log10((float(power.mean()) + 1e-12) / (floor + 1e-12))
    return {
        "seconds": round(n / sample_rate, 4),
        "clipped": round(float(np.mean(np.abs(wave) >= FULL_SCALE)), 5),
        "silence": round(float(np.mean(level < silence_db)), 4),
        "snr_db": round(float(snr), 2),
    }


def clip_reasons(found: dict[str, float], cfg: AudioQualityConfig) -> list[str]:
    """The failed bounds of one clip's measures, each with its numbers."""
    reasons = []
    if found["seconds"] < cfg.min_seconds:
        reasons.append(f"audio: too short ({found['seconds']:.2f} s < {cfg.min_seconds:g} s)")
    if found["seconds"] > cfg.max_seconds:
        reasons.append(f"audio: too long ({found['seconds']:.2f} s > {cfg.max_seconds:g} s)")
    if found["clipped"] > cfg.max_clipped:
        reasons.append(
            f"audio: clipped ({found['clipped']:.1%} > {cfg.max_clipped:.1%} of samples)"
        )
    if found["silence"] > cfg.max_silence:
        reasons.append(
            f"audio: mostly silent ({found['silence']:.0%} of frames below "
            f"{cfg.silence_db:g} dBFS > {cfg.max_silence:.0%})"
        )
    if cfg.min_snr_db is not None and found["snr_db"] < cfg.min_snr_db:
        reasons.append(f"audio: noisy (SNR {found['snr_db']:.1f} dB < {cfg.min_snr_db:g} dB)")
    return reasons


def check_clips(records: list[Record], load: Any, cfg: AudioQualityConfig, speech: bool) -> None:
    """Measure and check the accepted records' clips (``load``: media path -> (wave, sr))."""
    for record in records:
        if record.status != "accepted" or not record.payload.media:
            continue
        measures: list[dict[str, Any]] = []
        for item in record.payload.media:
            if item.type != "audio":
                continue
            try:
                wave, rate = load(item.path)
            except (OSError, ValueError) as exc:
                record.reject(f"audio: unreadable clip {item.path} ({exc})")
                continue
            found: dict[str, Any] = measure_clip(wave, rate, cfg.silence_db)
            if speech:
                found["asr"] = "skipped: no offline recogniser"
            measures.append(found)
            for reason in clip_reasons(found, cfg):
                record.reject(reason)
        if measures:
            record.quality["audio"] = measures


def audio_tier(ctx: StageContext, records: list[Record]) -> None:
    from synthtune.audio.wav import read_wav

    def load(relative: str) -> tuple[np.ndarray, int]:
        return read_wav(ctx.store.media_path(relative))

    generate = ctx.recipe.generation
    check_clips(records, load, ctx.recipe.quality.audio, generate.backend.type == "espeak")


def _audio_run(recipe: Any) -> bool:
    generate = recipe.generate
    return bool(
        recipe.quality.audio.enabled
        and generate is not None
        and is_audio_backend(generate.backend.type)
    )


plugins.register_quality_filter("audio", plugins.QualityFilter(20, audio_tier, _audio_run))
