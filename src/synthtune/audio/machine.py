"""Procedural machine sounds with exact labels: the audio twin of the procedural defects.

A rotating machine at ``rpm`` turns at f0 = rpm / 60 Hz. Each machine has its healthy
signature; each anomaly adds the signature vibration analysts look for, scaled by
``severity`` (0..1):

* fan: blade-pass tone (f0 x blades) with harmonics over broadband airflow noise;
* pump: shaft harmonics, vane-pass tone (f0 x vanes) and low-passed flow noise;
* bearing: weak shaft harmonics and the bearing's high-frequency hiss;

* ``normal``: the signature alone;
* ``imbalance``: a strong once-per-revolution (1x) component and amplitude modulation at f0;
* ``bearing-fault``: periodic impacts at the outer-race defect frequency (about 3.58 x f0)
  ringing a structural resonance (2-4 kHz), as an envelope analysis would find them;
* ``cavitation``: random bursts of broadband high-frequency noise (collapsing bubbles);
* ``looseness``: many harmonics of f0 and a half-order (0.5x) component (rattling).

Then background noise at ``snr_db`` and room reverberation (``reverb`` 0..1). Every random
choice comes from the request's seed, so a resumed run makes the same clip.

Written by hand (numpy/scipy): no library synthesises labelled machine faults; the effects
(noise at a given SNR, a decaying-noise room response) are a few lines each, and the usual
augmentation libraries would need impulse-response files or a room simulator that are not
available offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MACHINES = ("fan", "pump", "bearing")
ANOMALIES = ("normal", "imbalance", "bearing-fault", "cavitation", "looseness")
RPM_RANGE = (900.0, 3000.0)
SNR_RANGE = (10.0, 30.0)  # dB, when no snr_db slot is given
REVERB_RANGE = (0.0, 0.5)


@dataclass(frozen=True)
class MachineSpec:
    """What to synthesise; None fields are drawn from the request's seed."""

    machine: str
    anomaly: str
    severity: float
    rpm: float | None = None
    load: float | None = None  # 0..1: louder flow noise and a slightly slower shaft
    snr_db: float | None = None
    reverb: float | None = None

    @classmethod
    def from_slots(cls, slots: dict[str, Any]) -> MachineSpec:
        machine = str(slots.get("machine", "pump"))
        anomaly = str(slots.get("anomaly", "normal"))
        if machine not in MACHINES:
            raise ValueError(f"unknown machine {machine!r}; machines: {', '.join(MACHINES)}")
        if anomaly not in ANOMALIES:
            raise ValueError(f"unknown anomaly {anomaly!r}; anomalies: {', '.join(ANOMALIES)}")
        severity = float(slots.get("severity", 0.0 if anomaly == "normal" else 0.6))
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity {severity} is outside 0..1")

        def optional(name: str, low: float, high: float) -> float | None:
            if slots.get(name) is None:
                return None
            value = float(slots[name])
            if not low <= value <= high:
                raise ValueError(f"{name} {value} is outside {low:g}..{high:g}")
            return value

        return cls(
            machine,
            anomaly,
            severity,
            rpm=optional("rpm", 60.0, 20_000.0),
            load=optional("load", 0.0, 1.0),
            snr_db=optional("snr_db", -10.0, 80.0),
            reverb=optional("reverb", 0.0, 1.0),
        )


def _tone(t: np.ndarray, freq: float, amp: float, rng: np.random.Generator) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))


def _band_noise(n: int, sr: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """White noise band-passed to [low, high] Hz (FFT mask), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum[(freqs < low) | (freqs > min(high, sr / 2))] = 0
    band = np.fft.irfft(spectrum, n)
    return band / (np.sqrt(np.mean(band**2)) + 1e-12)


def _signature(
    spec: MachineSpec, t: np.ndarray, sr: int, f0: float, load: float, rng: np.random.Generator
) -> np.ndarray:
    n = len(t)
    if spec.machine == "fan":
        blades = int(rng.integers(4, 8))
        bpf = f0 * blades
        wave = sum(_tone(t, bpf * k, 0.5 / k, rng) for k in (1, 2, 3))
        wave = wave + (0.15 + 0.2 * load) * _band_noise(n, sr, 80, 4000, rng)
    elif spec.machine == "pump":
        vanes = int(rng.integers(5, 8))
        wave = sum(_tone(t, f0 * k, 0.3 / k, rng) for k in (1, 2, 3))
        wave = wave + _tone(t, f0 * vanes, 0.35, rng)
        wave = wave + (0.2 + 0.25 * load) * _band_noise(n, sr, 40, 1500, rng)
    else:  # bearing housing
        wave = sum(_tone(t, f0 * k, 0.2 / k, rng) for k in (1, 2))
        wave = wave + (0.1 + 0.1 * load) * _band_noise(n, sr, 1000, 6000, rng)
    return np.asarray(wave, dtype=np.float64)


def _anomaly(
    spec: MachineSpec, t: np.ndarray, sr: int, f0: float, base: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    s, n = spec.severity, len(t)
    if spec.anomaly == "normal" or s == 0:
        return base
    if spec.anomaly == "imbalance":
        modulated = base * (1 + 0.5 * s * np.sin(2 * np.pi * f0 * t))
        return modulated + _tone(t, f0, 1.2 * s, rng)
    if spec.anomaly == "bearing-fault":
        bpfo = f0 * rng.uniform(3.4, 3.8)
        resonance = rng.uniform(2000, min(4000, 0.4 * sr))
        impacts = np.zeros(n)
        start = rng.uniform(0, 1 / bpfo)
        for at in np.arange(start, t[-1], 1 / bpfo):
            i = int(at * sr)
            ring = np.arange(min(n - i, int(0.01 * sr))) / sr
            decay = np.exp(-ring * rng.uniform(600, 900))
            impacts[i : i + len(ring)] += decay * np.sin(2 * np.pi * resonance * ring)
        return base + 1.5 * s * impacts / (np.abs(impacts).max() + 1e-12)
    if spec.anomaly == "cavitation":
        bursts = np.zeros(n)
        noise = _band_noise(n, sr, 2000, 7000, rng)
        for _ in range(int(rng.integers(8, 20))):
            at = int(rng.integers(0, n))
            width = int(rng.uniform(0.005, 0.03) * sr)
            window = np.hanning(min(width, n - at)) if n - at > 1 else np.zeros(0)
            bursts[at : at + len(window)] += window * rng.uniform(0.5, 1.0)
        return base + 1.2 * s * bursts * noise
    # looseness: harmonics up to 10x and a half-order component, with a rattle
    harmonics = sum(_tone(t, f0 * k, 0.25 / np.sqrt(k), rng) for k in range(1, 11))
    rattle = _tone(t, 0.5 * f0, 0.4, rng) * (1 + np.sign(np.sin(2 * np.pi * f0 * t)))
    return base + s * (harmonics + rattle)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White background noise at ``snr_db`` below the signal's power."""
    power = float(np.mean(wave**2)) + 1e-12
    noise = rng.standard_normal(len(wave)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.asarray(wave + noise)


def add_reverb(wave: np.ndarray, amount: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room: convolution with exponentially decaying noise, RT60 0.05-0.65 s by ``amount``,
    mixed wet/dry by ``amount``; the length stays that of the input."""
    if amount <= 0:
        return wave
    from scipy.signal import fftconvolve

    rt60 = 0.05 + 0.6 * amount
    ir_t = np.arange(int(rt60 * sr)) / sr
    ir = rng.standard_normal(len(ir_t)) * np.exp(-6.9 * ir_t / rt60)  # -60 dB at rt60
    ir[0] = 1.0
    wet = fftconvolve(wave, ir)[: len(wave)]
    wet *= np.sqrt(np.mean(wave**2) / (np.mean(wet**2) + 1e-12))
    return np.asarray((1 - amount) * wave + amount * wet)


def normalise(wave: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scaled to ``peak`` (headroom: no clipping), float32."""
    top = float(np.abs(wave).max()) if len(wave) else 0.0
    return (wave * (peak / top) if top > 0 else wave).astype(np.float32)


def render_machine(
    spec: MachineSpec, sample_rate: int, seconds: float, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(float32 waveform, what was drawn)`` for one clip."""
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    load = spec.load if spec.load is not None else float(rng.uniform(0.0, 1.0))
    rpm = spec.rpm if spec.rpm is not None else float(rng.uniform(*RPM_RANGE))
    rpm *= 1 - 0.03 * load  # slip under load
    f0 = rpm / 60.0
    base = _signature(spec, t, sample_rate, f0, load, rng)
    wave = _anomaly(spec, t, sample_rate, f0, base, rng)
    snr = spec.snr_db if spec.snr_db is not None else float(rng.uniform(*SNR_RANGE))
    reverb = spec.reverb if spec.reverb is not None else float(rng.uniform(*REVERB_RANGE))
    wave = add_reverb(add_noise(wave, snr, rng), reverb, sample_rate, rng)
    drawn = {
        "rpm": round(rpm, 1),
        "load": round(load, 3),
        "snr_db": round(snr, 2),
        "reverb": round(reverb, 3),
        "severity": spec.severity,
    }
    return normalise(wave), drawn
