"""The openai backend against a loopback server that injects failures."""

from pathlib import Path

import pytest

from synthtune.config import OpenAIBackendConfig, load_recipe
from synthtune.errors import BackendError
from synthtune.llm.backends import GenerationRequest
from synthtune.llm.backends.openai_compat import OpenAIBackend, read_api_key
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from synthtune.testing.fake_openai import FakeOpenAI
from tests.conftest import write_recipe

MAX_RETRIES = 3


def _backend(url: str, **overrides) -> OpenAIBackend:
    cfg = OpenAIBackendConfig(
        type="openai",
        base_url=url,
        model="fake",
        api_key_env=None,
        concurrency=4,
        timeout_s=0.5,
        max_retries=MAX_RETRIES,
        backoff_s=0.01,
        max_backoff_s=1.0,
        **overrides,
    )
    return OpenAIBackend(cfg, api_key="sk-test-secret")


def _requests(prompts: list[str]) -> list[GenerationRequest]:
    return [
        GenerationRequest(str(i), [{"role": "user", "content": p}]) for i, p in enumerate(prompts)
    ]


PROMPTS = {
    "ok": "ok",
    "429": "fail:429x2",
    "500": "fail:500x1",
    "503": "fail:503x2",
    "slow": "slow:1",
    "truncated": "truncated:1",
    "malformed": "malformed",
    "empty": "empty",
    "429-forever": "fail:429x99",
}


def test_every_request_ends_generated_or_failed_with_a_reason() -> None:
    fake = FakeOpenAI(slow_s=1.0, retry_after_s=0.1)
    with fake as url:
        results = _backend(url).generate(_requests(list(PROMPTS.values())))
    got = dict(zip(PROMPTS, results, strict=True))
    for name in ("ok", "429", "500", "503", "slow", "truncated"):
        assert got[name].text == f"echo: {PROMPTS[name]}", (name, got[name])
        assert got[name].error is None
    assert got["429"].attempts == 3 and got["slow"].attempts == 2
    assert "malformed JSON reply" in got["malformed"].error
    assert "empty reply" in got["empty"].error
    assert "HTTP 429" in got["429-forever"].error
    for name in ("malformed", "empty", "429-forever"):
        assert got[name].text is None
        assert f"gave up after {MAX_RETRIES + 1} attempts" in got[name].error
    # bounded: no prompt was tried more than max_retries + 1 times
    per_prompt: dict[str, int] = {}
    for attempt in fake.attempts:
        per_prompt[attempt.prompt] = per_prompt.get(attempt.prompt, 0) + 1
    assert max(per_prompt.values()) == MAX_RETRIES + 1
    assert all(a.authorization == "Bearer sk-test-secret" for a in fake.attempts)
    # every retry carries its cause, one per retry
    assert got["429"].retry_reasons == ("HTTP 429", "HTTP 429")
    assert got["500"].retry_reasons == ("HTTP 500",)
    assert got["slow"].retry_reasons == ("timeout after 0.5 s",)
    assert got["ok"].retry_reasons == ()
    assert got["empty"].retry_reasons == ("empty reply",) * MAX_RETRIES
    for result in results:
        assert len(result.retry_reasons) == result.attempts - 1


def test_retry_after_is_respected() -> None:
    fake = FakeOpenAI(retry_after_s=0.3)
    with fake as url:
        [result] = _backend(url).generate(_requests(["fail:429x1"]))
    assert result.text == "echo: fail:429x1"
    first, second = fake.attempts
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.3


def test_client_errors_are_not_retried() -> None:
    fake = FakeOpenAI()
    with fake as url:
        [result] = _backend(url).generate(_requests(["fail:400x1"]))
    assert result.error is not None and result.error.startswith("HTTP 400")
    assert len(fake.attempts) == 1


def test_missing_key_variable_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("SYNTHTUNE_TEST_KEY", raising=False)
    cfg = OpenAIBackendConfig(type="openai", model="m", api_key_env="SYNTHTUNE_TEST_KEY")
    with pytest.raises(BackendError, match="SYNTHTUNE_TEST_KEY is not set"):
        read_api_key(cfg)


def test_a_key_in_place_of_the_variable_name_is_refused() -> None:
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        OpenAIBackendConfig(type="openai", model="m", api_key_env="sk-abc-123")


def test_generate_stage_with_openai_backend_keeps_failures_and_never_writes_the_key(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SYNTHTUNE_TEST_KEY", "sk-very-secret-value")
    fake = FakeOpenAI(retry_after_s=0.05)
    with fake as url:
        recipe = write_recipe(
            tmp_path,
            {
                "generate": {
                    "n": 12,
                    "backend": {
                        "type": "openai",
                        "base_url": url,
                        "model": "fake",
                        "max_retries": 1,
                        "api_key_env": "SYNTHTUNE_TEST_KEY",
                        "backoff_s": 0.01,
                        "timeout_s": 2,
                    },
                }
            },
        )
        text = recipe.read_text().replace("What should the patient do?", "fail:500x1")
        recipe.write_text(text)
        result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    records = RunStore(result.run_dir).read_table("generate", "dataset")
    assert len(records) == 12
    assert all(
        r.status == "accepted" and r.payload.messages[-1].role == "assistant" for r in records
    )
    assert any(r.lineage["attempts"] == 2 for r in records)
    # each retry's cause, per record and counted in the stage summary (the report's usage)
    retried = [r for r in records if r.lineage["attempts"] == 2]
    assert all(r.lineage["retries"] == {"HTTP 500": 1} for r in retried)
    usage = result.outcomes[-1].summary["usage"]
    assert usage["retry_reasons"] == {"HTTP 500": len(retried)} and usage["retried"] == len(retried)
    for path in result.run_dir.rglob("*"):
        if path.is_file():
            assert b"sk-very-secret-value" not in path.read_bytes(), path


def test_cache_never_pays_twice_and_no_cache_bypasses_it(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with fake as url:
        recipe = write_recipe(
            tmp_path,
            {
                "generate": {
                    "n": 10,
                    "flush_every": 4,
                    "backend": {
                        "type": "openai",
                        "base_url": url,
                        "model": "fake",
                        "api_key_env": None,
                    },
                }
            },
        )
        runs = tmp_path / "runs"
        first = run_recipe(load_recipe(recipe), runs, until="generate", quiet=True)
        assert len(fake.attempts) == 10
        before = RunStore(first.run_dir).read_table("generate", "dataset")
        # a forced re-run and an operational edit (concurrency) are served from the cache
        text = recipe.read_text().replace(
            "api_key_env: null", "api_key_env: null\n    concurrency: 2"
        )
        assert "concurrency: 2" in text
        recipe.write_text(text)
        assert load_recipe(recipe).generate.backend.concurrency == 2  # type: ignore[union-attr]
        again = run_recipe(load_recipe(recipe), runs, until="generate", quiet=True, force=True)
        assert len(fake.attempts) == 10
        after = RunStore(again.run_dir).read_table("generate", "dataset")
        assert [r.id for r in after] == [r.id for r in before]
        assert all(r.lineage["cached"] for r in after)
        # growing n only pays for the new requests
        recipe.write_text(recipe.read_text().replace("n: 10", "n: 13"))
        run_recipe(load_recipe(recipe), runs, until="generate", quiet=True)
        assert len(fake.attempts) == 13
        run_recipe(
            load_recipe(recipe), runs, until="generate", quiet=True, force=True, no_cache=True
        )
        assert len(fake.attempts) == 26


def test_rpm_and_tpm_pacing_space_request_starts() -> None:
    """Request i starts no earlier than i intervals after the first call. Measured from the
    first call, not between neighbours: a start that wakes late (a busy machine) may be
    followed sooner by the next, which is what a leaky bucket allows."""
    import asyncio
    import time

    from synthtune.llm.backends.openai_compat import RatePacer

    async def starts(pacer: RatePacer, tokens: int) -> list[float]:
        began = time.monotonic()
        out = []
        for _ in range(4):
            await pacer.wait(tokens)
            out.append(time.monotonic() - began)
        return out

    rpm = asyncio.run(starts(RatePacer(max_rpm=600), 0))  # 0.1 s apart
    assert all(t >= 0.099 * i for i, t in enumerate(rpm)), rpm
    tpm = asyncio.run(starts(RatePacer(None, max_tpm=60_000), 50))  # 50 tokens = 0.05 s
    assert all(t >= 0.049 * i for i, t in enumerate(tpm)), tpm
    unpaced = RatePacer(None, None)
    asyncio.run(starts(unpaced, 50))
    assert (unpaced._next_rpm, unpaced._next_tpm) == (0.0, 0.0)  # no waiting scheduled


def test_two_threads_share_one_loop_and_one_limit() -> None:
    """The generate stage runs two batches at once: their calls must land on the backend's
    one event loop (a race here once bound the client to a second loop)."""
    import threading

    fake = FakeOpenAI()
    with fake as url:
        for _ in range(20):  # a fresh backend each time: the race is in its first calls
            backend = _backend(url)
            out: dict[int, list] = {}

            def call(k: int, backend: OpenAIBackend = backend, out: dict = out) -> None:
                out[k] = backend.generate(_requests([f"ok {k} {i}" for i in range(8)]))

            threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert [r.text for r in out[0]] == [f"echo: ok 0 {i}" for i in range(8)]
            assert [r.text for r in out[1]] == [f"echo: ok 1 {i}" for i in range(8)]
            assert backend._limiter is not None
            backend.close()
