"""WAV in and out: 16-bit PCM mono through ``scipy.io.wavfile`` (scipy is a core
dependency), float32 waveforms in [-1, 1] everywhere else."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of a float waveform (clipped to [-1, 1])."""
    from scipy.io import wavfile

    pcm = np.round(np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0) * 32767.0)
    buffer = io.BytesIO()
    wavfile.write(buffer, int(sample_rate), pcm.astype(np.int16))
    return buffer.getvalue()


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """``(float32 mono waveform in [-1, 1], sample rate)``; stereo is averaged, integer PCM
    scaled by its type's range."""
    from scipy.io import wavfile

    rate, data = wavfile.read(str(path))
    wave = np.asarray(data)
    if wave.dtype.kind == "i":
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    elif wave.dtype.kind == "u":  # 8-bit PCM is unsigned, centred on 128
        wave = (wave.astype(np.float32) - 128.0) / 128.0
    wave = wave.astype(np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    return wave, int(rate)
