"""int8 on CPU: backend chosen by measurement, report complete; nf4 without CUDA is skipped."""

import math
from pathlib import Path

import pytest

from synthtune.export import quantize
from synthtune.export.quantize import INT8_CPU, available_int8_backends, quantize_model

PROMPTS = ["<|user|>\nPatient 2 has a cough.\n<|assistant|>\n", "<|user|>\nFever?\n"]
TEXTS = [f"Patient {i} reports a temperature of {36 + i % 5}.5 °C and a cough." for i in range(20)]


def test_int8_report_has_latency_size_and_quality(tiny_model_dir: Path, tmp_path: Path) -> None:
    report = quantize_model("int8", tiny_model_dir, tmp_path / "q", TEXTS, PROMPTS, 8, cuda=False)
    assert report["backend"] in available_int8_backends()
    assert set(report["backend_choice"]["ms_per_generation"]) == set(available_int8_backends())
    for side in ("fp32", "quantized"):
        lat = report[side]["latency"]
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] and lat["tokens_per_s"] > 0
        assert math.isfinite(report[side]["perplexity"]) and report[side]["size_bytes"] > 0
    # int8 weights: a quarter of fp32 for the linear layers; embeddings stay fp32
    assert report["quantized"]["size_bytes"] < report["fp32"]["size_bytes"]
    assert abs(report["comparison"]["perplexity_change_pct"]) < 10
    assert (tmp_path / "q" / "int8_state_dict.pt").exists()


def _mark_slow(model):  # type: ignore[no-untyped-def]
    model.slow = True
    return model


def test_the_fastest_measured_backend_wins(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from synthtune.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_model_dir), dtype="float32")
    INT8_CPU.register("slow-test-backend", _mark_slow)
    request.addfinalizer(lambda: INT8_CPU.unregister("slow-test-backend"))

    def fake_timer(model, tokenizer, prompt, new_tokens):  # type: ignore[no-untyped-def]
        return 5.0 if getattr(model, "slow", False) else 0.01

    monkeypatch.setattr(quantize, "generate_exactly", fake_timer)
    monkeypatch.setattr(
        quantize, "available_int8_backends", lambda: ["torch-ao-dynamic", "slow-test-backend"]
    )
    name, _, tried = quantize.choose_int8_backend(model, tokenizer, PROMPTS[0])
    assert name == "torch-ao-dynamic" and set(tried) == {"torch-ao-dynamic", "slow-test-backend"}


def test_nf4_without_cuda_is_skipped_with_a_reason(tiny_model_dir: Path, tmp_path: Path) -> None:
    report = quantize_model("nf4", tiny_model_dir, tmp_path / "q", TEXTS, PROMPTS, 4, cuda=False)
    assert "CUDA" in report["skipped"] and not (tmp_path / "q").exists()
