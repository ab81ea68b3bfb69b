"""Log-mel spectrograms: the fixed-size "image" of a clip that the audio encoder reads.

A clip is resampled to ``sample_rate`` (``scipy.signal.resample_poly``), centre-cropped or
zero-padded to the samples that make exactly ``frames`` STFT frames, turned into a power
spectrogram (``torch.stft``, Hann window, centred frames), mapped onto ``n_mels`` Slaney
mel bands (``transformers.audio_utils.mel_filter_bank``, librosa's default filters), taken
to decibels with an ``top_db`` floor below the clip's peak (librosa's ``power_to_db``), and
standardised per clip (zero mean, unit variance). Per-clip standardisation makes the features
independent of the recording's gain -- real microphones differ in level, and a class
("cavitation") does not depend on how loud the recording is.

The settings are a property of the model (the encoder's input is ``n_mels`` x ``frames``),
so they are saved in its folder (``audio_features.json``) and read back from there.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FEATURES_FILE = "audio_features.json"


@dataclass(frozen=True)
class LogMelConfig:
    """16 kHz, 32 ms windows every 16 ms, 64 mel bands x 64 frames (about 1.02 s): one
    second of machine sound as a 64x64 map, the size of a small ViT's input."""

    sample_rate: int = 16_000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 64
    frames: int = 64
    f_min: float = 0.0
    f_max: float | None = None  # None: the Nyquist frequency
    top_db: float = 80.0

    @property
    def samples(self) -> int:
        """Samples that give exactly ``frames`` centred STFT frames."""
        return (self.frames - 1) * self.hop_length

    @property
    def seconds(self) -> float:
        """Duration of audio one feature map covers."""
        return self.samples / self.sample_rate

    def save(self, folder: Path | str) -> None:
        path = Path(folder) / FEATURES_FILE
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path | str) -> LogMelConfig:
        """The settings saved in a model folder (the defaults when it has none)."""
        path = Path(folder) / FEATURES_FILE
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=8)
def _mel_matrix(cfg: LogMelConfig) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float32 Slaney-normalised triangular filters."""
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        num_frequency_bins=cfg.n_fft // 2 + 1,
        num_mel_filters=cfg.n_mels,
        min_frequency=cfg.f_min,
        max_frequency=cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2,
        sampling_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return np.asarray(filters, dtype=np.float32)


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """The centre ``samples`` of a longer clip; a shorter one zero-padded at both ends."""
    extra = len(wave) - samples
    if extra >= 0:
        start = extra // 2
        return wave[start : start + samples]
    before = -extra // 2
    return np.pad(wave, (before, -extra - before))


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``rate`` to ``target`` Hz."""
    if rate == target:
        return wave
    from scipy.signal import resample_poly

    common = math.gcd(rate, target)
    out: np.ndarray = resample_poly(wave, target // common, rate // common)
    return out.astype(np.float32)


def log_mel_batch(waves: torch.Tensor, cfg: LogMelConfig) -> torch.Tensor:
    """(N, cfg.samples) float waveforms at ``cfg.sample_rate`` -> (N, n_mels, frames)
    standardised log-mel maps (see the module docstring)."""
    import torch

    window = torch.hann_window(cfg.n_fft, device=waves.device)
    spectrum = torch.stft(
        waves, cfg.n_fft, cfg.hop_length, window=window, center=True, return_complex=True
    )
    power = spectrum.real.square() + spectrum.imag.square()  # (N, bins, frames)
    mel = torch.from_numpy(_mel_matrix(cfg)).to(waves.device).T @ power
    decibels = 10.0 * torch.log10(mel.clamp_min(1e-10))
    peak = decibels.amax(dim=(1, 2), keepdim=True)
    decibels = torch.maximum(decibels, peak - cfg.top_db)
    mean = decibels.mean(dim=(1, 2), keepdim=True)
    std = decibels.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
    return (decibels - mean) / std


def prepare_wave(wave: np.ndarray, rate: int, cfg: LogMelConfig) -> np.ndarray:
    """A mono float waveform at ``rate`` as the ``cfg.samples`` samples the features read."""
    mono = np.asarray(wave, dtype=np.float32)
    return fit_length(resample(mono, rate, cfg.sample_rate), cfg.samples)


def log_mel(wave: np.ndarray, rate: int, cfg: LogMelConfig) -> np.ndarray:
    """One clip as a (1, n_mels, frames) float32 map (a one-channel image)."""
    import torch

    prepared = torch.from_numpy(prepare_wave(wave, rate, cfg))[None]
    out: np.ndarray = log_mel_batch(prepared, cfg).numpy()
    return out.astype(np.float32)


def clip_features(path: Path | str, cfg: LogMelConfig) -> np.ndarray:
    """The (1, n_mels, frames) log-mel map of a WAV file."""
    from synthtune.audio.wav import read_wav

    wave, rate = read_wav(path)
    return log_mel(wave, rate, cfg)
