"""Audio generation: machine sounds carry the signature of their labelled anomaly, clips are
deterministic by (seed, index), records keep their clips through the run store, the audio
tier rejects each defect with its reason, and a wrong recipe exits 2 before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.signal import hilbert
from typer.testing import CliRunner

from synthtune.audio.machine import MachineSpec, render_machine
from synthtune.audio.quality_tier import check_clips, clip_reasons, measure_clip
from synthtune.audio.wav import read_wav, wav_bytes
from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.config.quality import AudioQualityConfig
from synthtune.pipeline import run_recipe
from synthtune.records import AudioMedia, Message, Payload, Record
from synthtune.store import RunStore

SR = 16_000


def _clip(anomaly: str, seed: int = 1, machine: str = "pump") -> np.ndarray:
    spec = MachineSpec(machine, anomaly, 0.8, rpm=1800, snr_db=30, reverb=0.0)
    wave, _ = render_machine(spec, SR, 1.0, np.random.default_rng(seed))
    return wave


def _share(wave: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def test_each_anomaly_carries_its_signature() -> None:
    normal = _clip("normal")
    f0 = 1800 / 60
    # imbalance: the once-per-revolution line dominates
    assert _share(_clip("imbalance"), f0 - 1, f0 + 1) > 2.5 * _share(normal, f0 - 1, f0 + 1)
    # bearing fault: the envelope of the resonance band beats at the outer-race frequency
    fault = _clip("bearing-fault")
    spectrum = np.fft.rfft(fault)
    freqs = np.fft.rfftfreq(len(fault), 1 / SR)
    spectrum[freqs < 1500] = 0
    envelope = np.abs(hilbert(np.fft.irfft(spectrum, len(fault))))
    env = np.abs(np.fft.rfft(envelope - envelope.mean()))
    band = (freqs > 60) & (freqs < 200)
    assert 3.4 * f0 - 2 <= freqs[band][np.argmax(env[band])] <= 3.8 * f0 + 2
    # cavitation: impulsive high-frequency bursts
    cavitation = _clip("cavitation")
    assert _share(cavitation, 2000, 7000) > 50 * _share(normal, 2000, 7000)

    def kurtosis(w: np.ndarray) -> float:
        return float(((w - w.mean()) ** 4).mean() / w.var() ** 2)

    assert kurtosis(cavitation) > kurtosis(normal) + 1
    # looseness: a half-order component
    assert _share(_clip("looseness"), f0 / 2 - 1, f0 / 2 + 1) > 20 * _share(
        normal, f0 / 2 - 1, f0 / 2 + 1
    )


def test_clips_depend_on_the_seed_only_and_stay_in_range() -> None:
    a, b, c = _clip("cavitation", 5), _clip("cavitation", 5), _clip("cavitation", 6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and len(a) == SR and 0.89 < np.abs(a).max() <= 0.9 + 1e-6


def test_bad_slots_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown anomaly 'rust'; anomalies: normal"):
        MachineSpec.from_slots({"machine": "pump", "anomaly": "rust"})
    with pytest.raises(ValueError, match=r"severity 1\.5 is outside 0\.\.1"):
        MachineSpec.from_slots({"anomaly": "imbalance", "severity": 1.5})


def test_wav_round_trip_keeps_16_bit_precision(tmp_path: Path) -> None:
    wave = _clip("normal")
    data = wav_bytes(wave, SR)
    assert data[:4] == b"RIFF" and len(data) == 44 + 2 * SR
    (tmp_path / "a.wav").write_bytes(data)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == SR and np.abs(back - wave).max() <= 1 / 32767 + 1e-6


def _recipe(folder: Path, **generate) -> Path:
    recipe = {
        "name": "sounds",
        "seed": 7,
        "generate": {
            "n": 24,
            "backend": {"type": "machine-sound", "seconds": 0.5},
            "templates": [
                {
                    "id": "clip",
                    "prompt": "the sound of a {{ machine }} with {{ anomaly }}",
                    "label": "{{ anomaly }}",
                    "slots": {
                        "machine": {"choice": ["fan", "pump", "bearing"]},
                        "anomaly": {"choice": ["normal", "imbalance", "rust"]},
                        "severity": {"uniform": [0.4, 1.0], "round": 2},
                    },
                }
            ],
            **generate,
        },
        "quality": {"perplexity": {"enabled": False}},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_generated_clips_are_labelled_files_with_lineage(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path))
    first = run_recipe(recipe, tmp_path / "a", until="quality", quiet=True)
    second = run_recipe(recipe, tmp_path / "b", until="quality", quiet=True)
    records = RunStore(first.run_dir).read_table("quality", "dataset")
    again = RunStore(second.run_dir).read_table("quality", "dataset")
    assert [r.id for r in records] == [r.id for r in again]  # same seed: same clips
    assert len(records) == 24
    for record in records:
        slots = record.lineage["slots"]
        if slots["anomaly"] == "rust":  # a value the synthesiser refuses: that record's reason
            assert record.status == "rejected"
            assert record.reasons[0].startswith("machine-sound: unknown anomaly 'rust'")
            continue
        assert record.status == "accepted" and record.payload.label == slots["anomaly"]
        (media,) = record.payload.media or ()
        assert isinstance(media, AudioMedia) and media.seconds == 0.5
        wave, rate = read_wav(first.run_dir / media.path)
        assert rate == 16_000 and len(wave) == 8000
        assert record.lineage["drawn"]["severity"] == slots["severity"]
        audio = record.quality["audio"][0]
        assert audio["seconds"] == 0.5 and audio["clipped"] == 0 and audio["silence"] == 0


def test_an_audio_backend_with_a_text_strategy_exits_2(tmp_path: Path) -> None:
    path = _recipe(tmp_path, strategy={"type": "template-fill"})
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "audio backends (espeak, machine-sound) go with the `audio` strategy" in " ".join(
        result.output.split()
    )


def _record(path: str) -> Record:
    media = AudioMedia(type="audio", path=path, sample_rate=SR, seconds=1.0)
    payload = Payload(messages=[Message(role="user", content=path)], media=(media,))
    return Record.create("synthetic", payload)


def test_the_audio_tier_rejects_each_defect_with_its_numbers() -> None:
    rng = np.random.default_rng(0)
    speechlike = np.concatenate(
        [0.25 * rng.standard_normal(SR // 2), 0.01 * rng.standard_normal(SR // 2)]
    )
    clips = {
        "ok.wav": 0.3 * rng.standard_normal(SR),
        "clipped.wav": np.clip(3 * rng.standard_normal(SR), -1, 1),
        "silent.wav": np.concatenate([0.3 * rng.standard_normal(SR // 5), np.zeros(4 * SR // 5)]),
        "short.wav": 0.3 * rng.standard_normal(SR // 10),
        "speech.wav": speechlike,
    }
    records = [_record(name) for name in [*clips, "missing.wav"]]

    def load(path: str) -> tuple[np.ndarray, int]:
        if path not in clips:
            raise OSError("no such file")
        return clips[path].astype(np.float32), SR

    cfg = AudioQualityConfig(min_snr_db=40)
    check_clips(records, load, cfg, speech=True)
    reasons = {r.payload.messages[0].content: r.reasons for r in records}
    assert reasons["clipped.wav"][0].startswith("audio: clipped (")
    assert reasons["silent.wav"] == [
        "audio: mostly silent (80% of frames below -50 dBFS > 50%)",
        *[r for r in reasons["silent.wav"] if r.startswith("audio: noisy")],
    ]
    assert reasons["short.wav"][0] == "audio: too short (0.10 s < 0.2 s)"
    assert reasons["missing.wav"] == ["audio: unreadable clip missing.wav (no such file)"]
    # steady noise has no quieter frames: SNR about 0 dB, below 40; speech-like pauses: ~25 dB
    assert reasons["ok.wav"][0].startswith("audio: noisy (SNR 0.")
    speech = next(r for r in records if r.payload.messages[0].content == "speech.wav")
    measured = speech.quality["audio"][0]
    assert measured["snr_db"] == pytest.approx(10 * np.log10((0.0625 + 0.0001) / 2 / 0.0001), abs=1)
    assert measured["asr"] == "skipped: no offline recogniser"
    assert clip_reasons(measure_clip(clips["speech.wav"], SR, -50), AudioQualityConfig()) == []


def test_the_held_aside_set_draws_new_sources_and_noise(tmp_path: Path) -> None:
    from synthtune.audio.heldout import HELDOUT_DIR, heldout_records

    recipe = load_recipe(_recipe(tmp_path))
    run = run_recipe(recipe, tmp_path / "runs", until="quality", quiet=True)
    store = RunStore(run.run_dir)
    generated = store.read_table("quality", "dataset")
    held = heldout_records(store, recipe, 24, seed=1234)
    again = heldout_records(store, recipe, 24, seed=1234)
    assert [r.id for r in held] == [r.id for r in again]  # reproducible
    # the refused "rust" slot values are not in it: only accepted clips
    assert held and all(r.payload.label in {"normal", "imbalance"} for r in held)
    assert not {r.id for r in held} & {r.id for r in generated}
    drawn = {r.lineage["drawn"]["rpm"] for r in generated if r.status == "accepted"}
    assert not drawn & {r.lineage["drawn"]["rpm"] for r in held}  # new machines
    for record in held:
        (media,) = record.payload.media or ()
        assert media.path.startswith(HELDOUT_DIR) and (run.run_dir / media.path).exists()
        assert record.quality["audio"][0]["seconds"] == 0.5


def test_the_report_shows_one_spectrogram_per_class_and_the_audio_checks(tmp_path: Path) -> None:
    from synthtune.report.html import _audio_thumbnails, build_report

    run = run_recipe(load_recipe(_recipe(tmp_path)), tmp_path / "r", until="quality", quiet=True)
    store = RunStore(run.run_dir)
    clips = _audio_thumbnails(store, store.read_table("quality", "dataset"))
    assert [title for title, _, _ in clips] == ["imbalance", "normal"]  # rust was refused
    assert all(rate == 16_000 and len(wave) == 8000 for _, wave, rate in clips)
    html = build_report(run.run_dir).read_text(encoding="utf-8")
    assert 'alt="spectrogram of one clip per class" src="data:image/png;base64,' in html
    assert "median 0.5 s, clipped share 0.0" in html


@pytest.mark.skipif(
    __import__("synthtune.audio.tts", fromlist=["x"]).tts_unavailable() is not None,
    reason="eSpeak NG not installed (synthtune[audio])",
)
def test_speech_backend_noise_is_what_the_snr_estimate_measures() -> None:
    from synthtune.audio.backends import AudioRequest, EspeakBackend
    from synthtune.config.generate import EspeakBackendConfig

    backend = EspeakBackend(EspeakBackendConfig(type="espeak"))
    levels = [5.0, 10.0, 15.0, 20.0]
    requests = [
        AudioRequest(f"k{i}", "I have had chest pain for two days.", {"snr_db": s, "rate": 160}, i)
        for i, s in enumerate(levels)
    ]
    results = backend.render(requests)
    for level, result in zip(levels, results, strict=True):
        assert result.wave is not None and result.error is None
        found = measure_clip(result.wave, result.sample_rate, -50)
        # speech pauses reveal the floor: the estimate tracks the noise that was added
        assert found["snr_db"] == pytest.approx(level, abs=3.0)
        assert result.lineage["drawn"]["snr_db"] == level
    bad = backend.render([AudioRequest("x", "hello", {"voice": "no-such-voice"}, 0)])[0]
    assert bad.wave is None and bad.error is not None and "no-such-voice" in bad.error


def test_out_of_range_audio_bounds_exit_2_naming_the_field(tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    recipe["quality"]["audio"] = {"max_clipped": 2}
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "quality.audio.max_clipped" in result.output
