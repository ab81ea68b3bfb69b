"""eSpeak NG speech (synthtune.audio.tts): real synthesis, measured against what the
arguments promise. The pinned ranges were measured with espeakng-loader 0.2.4 (eSpeak NG
1.52.0) and leave room around those values."""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import pytest

from synthtune.audio.tts import VOICES, speak, tts_unavailable

pytestmark = pytest.mark.skipif(
    tts_unavailable() is not None, reason=f"eSpeak NG unavailable: {tts_unavailable()}"
)

ENGLISH = "The quick brown fox jumps over the lazy dog."
MANDARIN = "今天天气很好，我们一起去公园散步吧。"
SR = 16000


def f0(wave: np.ndarray, sr: int = SR, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median fundamental frequency over voiced frames: 40 ms frames every 10 ms, the loud
    ones (energy over a tenth of the loudest) whose normalised autocorrelation peaks above
    0.5 within the 60-400 Hz lag range."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    shortest, longest = int(sr / fmax), int(sr / fmin)
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop]
    energy = (frames**2).mean(axis=1)
    estimates = []
    for fr in frames[energy > 0.1 * energy.max()]:
        fr = fr - fr.mean()
        ac = np.correlate(fr, fr, "full")[frame - 1 :]
        if ac[0] <= 0:
            continue
        ac = ac / ac[0]
        lag = shortest + int(np.argmax(ac[shortest:longest]))
        if ac[lag] > 0.5:
            estimates.append(sr / lag)
    assert len(estimates) >= 10, "too few voiced frames to estimate F0"
    return float(np.median(estimates))


def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


def test_same_arguments_give_identical_arrays() -> None:
    first = speak(ENGLISH, voice="en", rate=160, pitch=60, sample_rate=SR)
    # other speech in between: eSpeak's own state would carry over from it (see tts.py)
    speak(MANDARIN, voice="cmn", rate=300, pitch=10)
    again = speak(ENGLISH, voice="en", rate=160, pitch=60, sample_rate=SR)
    assert first.dtype == np.float32 and first.ndim == 1
    assert np.array_equal(first, again)
    assert np.abs(first).max() <= 1.0


def test_concurrent_calls_match_serial_ones() -> None:
    expected = speak(ENGLISH, voice="en-us")
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(speak(ENGLISH, voice="en-us")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(np.array_equal(expected, r) for r in results)


def test_slower_rate_makes_longer_speech() -> None:
    slow = speak(ENGLISH, voice="en", rate=100)
    fast = speak(ENGLISH, voice="en", rate=250)
    # 250/100 = 2.5 in words per minute; pauses and phoneme floors make it 2.33 (measured)
    assert 2.0 < len(slow) / len(fast) < 2.7
    assert 3.5 < len(slow) / SR < 5.0


@pytest.mark.parametrize(("voice", "text"), [("en", ENGLISH), ("cmn", MANDARIN)])
def test_higher_pitch_raises_the_fundamental(voice: str, text: str) -> None:
    low, mid, high = (f0(speak(text, voice=voice, pitch=p)) for p in (25, 50, 75))
    # measured: en 81 / 101 / 131 Hz, cmn 74 / 89 / 118 Hz
    assert low < mid < high
    assert 1.35 < high / low < 1.9
    assert 70 < mid < 130


@pytest.mark.parametrize(
    ("voice", "text"),
    [("en", ENGLISH), ("en-us", ENGLISH), ("cmn", MANDARIN), ("zh", "你好，世界。")],
)
def test_english_and_mandarin_voices_speak(voice: str, text: str) -> None:
    wave = speak(text, voice=voice)
    assert 0.5 < len(wave) / SR < 5.0
    assert rms(wave) > 0.05  # measured 0.09-0.11


def test_every_listed_voice_speaks() -> None:
    for name in VOICES:
        wave = speak("Hello, one two three.", voice=name)
        assert rms(wave) > 0.05, name


def test_unknown_voice_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="no-such-voice") as caught:
        speak("Hello.", voice="no-such-voice")
    assert "en-us" in str(caught.value) and "cmn" in str(caught.value)
    with pytest.raises(ValueError, match=r"en\+nosuchvariant"):
        speak("Hello.", voice="en+nosuchvariant")


def test_sample_rate_is_honoured() -> None:
    native = speak(ENGLISH, sample_rate=22050)
    seconds = len(native) / 22050
    for rate in (8000, 16000, 44100):
        wave = speak(ENGLISH, sample_rate=rate)
        assert abs(len(wave) - seconds * rate) <= 1, rate
    # the resampled 16 kHz speech keeps its level
    assert abs(rms(speak(ENGLISH)) - rms(native)) < 0.01


@pytest.mark.parametrize("text", ["", "   ", "...", "\0"])
def test_text_without_sound_gives_an_empty_array(text: str) -> None:
    wave = speak(text)
    assert wave.shape == (0,) and wave.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs", [{"rate": 40}, {"rate": 451}, {"pitch": -1}, {"pitch": 101}, {"sample_rate": 0}]
)
def test_out_of_range_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        speak("Hello.", **kwargs)


def test_unavailable_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now fails
    reason = tts_unavailable()
    assert reason is not None and "pip install 'synthtune[audio]'" in reason
    assert "\n" not in reason
