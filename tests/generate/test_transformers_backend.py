"""The transformers backend: batched, length-sorted generation equal to one-at-a-time."""

from pathlib import Path

from synthtune.config import TransformersBackendConfig, load_recipe
from synthtune.llm.backends import GenerationRequest, create_backend
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from tests.conftest import write_recipe

PROMPTS = [
    "Patient reports a cough.",
    "Temperature 38.5 °C",
    "Patient 12 reports a temperature of 39.5 °C and a cough for three days now.",
    "fever",
    "Patient 4 reports a temperature of 36.5 °C.",
]


def _requests() -> list[GenerationRequest]:
    return [
        GenerationRequest(str(i), [{"role": "user", "content": p}]) for i, p in enumerate(PROMPTS)
    ]


def _backend(path: Path, batch_size: int):
    cfg = TransformersBackendConfig(
        type="transformers", model=str(path), max_new_tokens=6, batch_size=batch_size
    )
    return create_backend(cfg, lambda name: name)


def test_batched_greedy_equals_one_prompt_at_a_time(chatty_model_dir: Path) -> None:
    batched = _backend(chatty_model_dir, batch_size=4).generate(_requests())
    single = _backend(chatty_model_dir, batch_size=1).generate(_requests())
    assert all(r.text and r.tokens_out == 6 for r in single)
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.tokens_in > 0 for r in batched)
    assert all(r.text or r.error for r in batched)  # an empty reply is reported, not hidden


def test_generate_stage_runs_on_local_tiny(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path,
        {
            "generate": {
                "n": 6,
                "backend": {
                    "type": "transformers",
                    "model": "local-tiny",
                    "max_new_tokens": 8,
                    "batch_size": 4,
                },
            }
        },
    )
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    records = RunStore(result.run_dir).read_table("generate", "dataset")
    assert len(records) == 6
    for record in records:
        assert record.lineage["backend"] == "transformers"
        assert record.lineage["model"] == "local-tiny"
        assert record.status == "rejected" or record.payload.messages[-1].role == "assistant"


def test_stop_strings_cut_the_reply(chatty_model_dir: Path) -> None:
    from synthtune.llm.backends.transformers import cut_at_stop

    assert cut_at_stop("Rest well.\nUser: more", ["\nUser:"]) == "Rest well."
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"
    free = _backend(chatty_model_dir, batch_size=4).generate(_requests())
    stop = free[2].text[len(free[2].text) // 2 :][:2]
    cfg = TransformersBackendConfig(
        type="transformers", model=str(chatty_model_dir), max_new_tokens=6, stop=[stop]
    )
    stopped = create_backend(cfg, lambda name: name).generate(_requests())
    cut = 0
    for a, b in zip(free, stopped, strict=True):
        if stop in a.text:
            cut += 1
            assert b.text is None or (stop not in b.text and a.text.startswith(b.text))
        else:
            assert b.text == a.text
    assert cut >= 1


def test_vllm_without_gpu_fails_clearly() -> None:
    import pytest

    from synthtune.config import VLLMBackendConfig
    from synthtune.errors import BackendError

    cfg = VLLMBackendConfig(type="vllm", model="Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(BackendError, match="vllm"):
        create_backend(cfg, lambda name: name)


def test_a_wordpiece_vocabulary_decoder_generates(tmp_path: Path) -> None:
    # BERT-style tokenizers also return token_type_ids, which a causal LM's generate() rejects
    from transformers import AutoTokenizer

    from synthtune.config import LocalTinyConfig
    from synthtune.embeddings import resolve_embedder
    from synthtune.models import build_tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(resolve_embedder("all-MiniLM-L6-v2"))
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    assert "token_type_ids" in tokenizer("a cough")
    model = build_tiny_llama(tokenizer, LocalTinyConfig(hidden_size=32, layers=1, heads=2), 0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    results = _backend(tmp_path, batch_size=2).generate(_requests())
    assert len(results) == len(PROMPTS)
    assert all(r.tokens_in > 0 and (r.text or r.error) for r in results)


def _spy(backend) -> list[dict]:
    real, calls = backend.lm.generate, []

    def generate(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    backend.lm.generate = generate
    return calls


def test_static_kv_cache_gives_the_dynamic_cache_outputs(chatty_model_dir: Path) -> None:
    cfg = TransformersBackendConfig(
        type="transformers", model=str(chatty_model_dir), max_new_tokens=6, batch_size=4
    )
    static_backend = create_backend(cfg, lambda name: name)
    static_calls = _spy(static_backend)
    static = static_backend.generate(_requests())
    dynamic_cfg = cfg.model_copy(update={"kv_cache": "dynamic"})
    dynamic_backend = create_backend(dynamic_cfg, lambda name: name)
    dynamic_calls = _spy(dynamic_backend)
    dynamic = dynamic_backend.generate(_requests())
    assert all(r.text for r in static) and [r.text for r in static] == [r.text for r in dynamic]
    assert {c["cache_implementation"] for c in static_calls} == {"static"}
    assert all(c["disable_compile"] for c in static_calls)  # no torch.compile on GPU
    assert {c["cache_implementation"] for c in dynamic_calls} == {"dynamic"}


def test_a_failing_static_cache_falls_back_to_dynamic_once(chatty_model_dir: Path) -> None:
    backend = _backend(chatty_model_dir, batch_size=4)
    real = backend.lm.generate
    asked: list[str] = []

    def generate(**kwargs):
        asked.append(kwargs["cache_implementation"])
        if kwargs["cache_implementation"] == "static":
            raise KeyError("sliding_attention")  # e.g. a layer type without a static layer
        return real(**kwargs)

    backend.lm.generate = generate
    results = backend.generate(_requests())
    assert all(r.tokens_out == 6 for r in results)
    assert asked[:2] == ["static", "dynamic"] and set(asked[2:]) == {"dynamic"}  # remembered
    assert "sliding_attention" in (backend.static_error or "")
