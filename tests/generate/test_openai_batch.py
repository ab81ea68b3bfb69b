"""The openai backend's Batch API mode against a loopback fake of the files and batches API:
every request maps back by custom_id, failures become per-record reasons, a crash resumes
the same batches, and the dry run prices both modes."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import OpenAIBackendConfig, load_recipe
from synthtune.errors import BackendError
from synthtune.llm.backends import GenerationRequest
from synthtune.llm.backends.base import BackendContext
from synthtune.llm.backends.openai_batch import BatchPending, OpenAIBatchBackend
from synthtune.llm.cache import backend_dump, cache_key
from synthtune.pipeline import fingerprints, run_recipe
from synthtune.store import RunStore
from synthtune.testing.fake_openai_batch import FakeBatchAPI
from tests.conftest import write_recipe

PRICES = {"fake": {"input_per_1m": 1000, "output_per_1m": 2000}}


def _backend(url: str, state_dir: Path | None = None, **overrides) -> OpenAIBatchBackend:
    cfg = OpenAIBackendConfig(
        type="openai",
        base_url=url,
        model="fake",
        api_key_env=None,
        mode="batch",
        batch_poll_s=0,
        max_retries=2,
        backoff_s=0.001,
        max_backoff_s=0.001,
        **overrides,
    )
    backend = OpenAIBatchBackend(cfg, api_key="sk-batch-secret")
    backend.bind(BackendContext(state_dir=state_dir))
    return backend


def _requests(prompts: list[str]) -> list[GenerationRequest]:
    return [
        GenerationRequest(str(i), [{"role": "user", "content": p}], sample=i)
        for i, p in enumerate(prompts)
    ]


def _recipe(
    tmp_path: Path, url: str, n: int = 40, prompt: str | None = None, batch: bool = True, **backend
) -> Path:
    template = {
        "id": "ask",
        "prompt": prompt or "question {{ i }} about {{ topic }}",
        "slots": {"i": {"randint": [1, 10**9]}, "topic": {"choice": ["fever", "cough"]}},
    }
    return write_recipe(
        tmp_path,
        {
            "generate": {
                "n": n,
                "flush_every": 8,
                "templates": [template],
                "prices": PRICES,
                "backend": {
                    "type": "openai",
                    "base_url": url,
                    "model": "fake",
                    "api_key_env": None,
                    **({"mode": "batch", "batch_poll_s": 0} if batch else {}),
                    "max_tokens": 20,
                    **backend,
                },
            }
        },
    )


def _generated(run_dir: Path) -> list:
    return RunStore(run_dir).read_table("generate", "dataset")


def test_batch_mode_runs_the_stage_through_one_batch(tmp_path: Path) -> None:
    fake = FakeBatchAPI(polls_to_finish=3)
    with fake as url:
        result = run_recipe(
            load_recipe(_recipe(tmp_path, url)), tmp_path / "runs", until="generate", quiet=True
        )
    records = _generated(result.run_dir)
    assert len(records) == 40 and all(r.status == "accepted" for r in records)
    for record in records:  # each reply is its own prompt's, though lines came back reversed
        prompt = record.payload.messages[-2].content
        assert record.payload.messages[-1].content == f"echo: {prompt}"
    # one upload, one batch (flush_every 8 does not cut a batch job into 5), polled to its end
    assert fake.count("POST", "/v1/files") == 1 and fake.count("POST", "/v1/batches") == 1
    assert fake.count("GET", "/v1/batches/batch_1") == 3
    lines = fake.input_lines("batch_1")
    assert len({line["custom_id"] for line in lines}) == 40
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert fake.batches["batch_1"]["completion_window"] == "24h"
    # the batch price: half the listed one, per record and in the summary
    for record in records:
        listed = (record.lineage["tokens_in"] * 1000 + record.lineage["tokens_out"] * 2000) / 1e6
        assert record.lineage["cost_usd"] == pytest.approx(listed / 2)
    # the job's state, saved in the stage's folder
    [state_file] = (result.run_dir / "generate" / "backend-state").glob("batch-*.json")
    state = json.loads(state_file.read_text())
    assert state["batch_id"] == "batch_1" and state["status"] == "completed"
    assert state["input_file_id"] == fake.batches["batch_1"]["input_file_id"]


def test_per_line_failures_become_rejected_records_with_reasons(tmp_path: Path) -> None:
    fake = FakeBatchAPI(polls_to_finish=1)
    prompt = "{{ kind }} question {{ i }}"
    recipe = _recipe(tmp_path, fake.start(), n=36, prompt=prompt)
    text = recipe.read_text().replace(
        "topic:\n", "kind:\n        choice: [ok, line-error, http-400, empty]\n      topic:\n"
    )
    recipe.write_text(text)
    try:
        result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    finally:
        fake.stop()
    records = _generated(result.run_dir)
    assert len(records) == 36
    by_kind: dict[str, list] = {}
    for record in records:
        by_kind.setdefault(record.lineage["slots"]["kind"], []).append(record)
    assert set(by_kind) == {"ok", "line-error", "http-400", "empty"}
    assert all(r.status == "accepted" for r in by_kind["ok"])
    for kind, reason in [
        ("line-error", "generate: batch error server_error: injected line error"),
        ("http-400", "generate: batch HTTP 400: "),
        ("empty", "generate: batch reply: empty reply"),
    ]:
        for record in by_kind[kind]:
            assert record.status == "rejected"
            assert record.reasons[0].startswith(reason), record.reasons
    assert "injected bad request" in by_kind["http-400"][0].reasons[0]
    summary = result.outcomes[-1].summary
    assert summary["usage"]["failed"] == 36 - len(by_kind["ok"])


def test_expired_batch_keeps_its_completed_lines(tmp_path: Path) -> None:
    fake = FakeBatchAPI(polls_to_finish=2, final_status="expired", processed=4)
    with fake as url:
        results = _backend(url).generate(_requests([f"q{i}" for i in range(7)]))
    assert [r.text for r in results[:4]] == [f"echo: q{i}" for i in range(4)]
    for result in results[4:]:
        assert result.text is None
        assert result.error == "generate: batch error batch_expired: not run: the batch was expired"


def test_expired_batch_without_error_lines_names_the_batch(tmp_path: Path) -> None:
    """A request in neither file gets the batch's fate as its reason, with the batch id."""
    fake = FakeBatchAPI(polls_to_finish=1, final_status="cancelled", processed=2)
    with fake as url:
        backend = _backend(url)
        original = fake._finish

        def drop_error_file(batch: dict) -> None:
            original(batch)
            batch["error_file_id"] = None

        fake._finish = drop_error_file  # type: ignore[method-assign]
        results = backend.generate(_requests(["a", "b", "c"]))
    assert [r.text for r in results] == ["echo: a", "echo: b", None]
    assert results[2].error == "generate: batch cancelled before this request ran (batch_1)"


def test_failed_batch_gives_every_request_the_reason(tmp_path: Path) -> None:
    fake = FakeBatchAPI(polls_to_finish=1, final_status="failed")
    with fake as url:
        results = _backend(url).generate(_requests(["a", "b"]))
    assert [r.error for r in results] == [
        "generate: batch failed: invalid_request: injected validation failure (batch_1)"
    ] * 2


def test_requests_above_batch_max_requests_are_split_and_mapped_back(tmp_path: Path) -> None:
    fake = FakeBatchAPI(polls_to_finish=2)
    notes: list[str] = []
    logs: list[str] = []
    prompts = [f"q{i}" for i in range(10)] + ["q3"]  # a repeat with its own sample index
    with fake as url:
        backend = _backend(url, batch_max_requests=4)
        backend.bind(BackendContext(tmp_path / "state", log=logs.append, status=notes.append))
        results = backend.generate(_requests(prompts))
    assert [r.text for r in results] == [f"echo: {p}" for p in prompts]
    assert fake.count("POST", "/v1/batches") == 3
    assert sorted(len(fake.input_lines(b)) for b in fake.batches) == [3, 4, 4]
    assert all(r.tokens_in == 1 and r.tokens_out == 2 for r in results)
    # the user can find the batches (their ids are logged) and sees their progress
    assert all(any(batch in line for line in logs) for batch in fake.batches)
    assert "3 batches 3 validating: 0/11 done, 0 failed" in notes
    assert notes[-1] == "3 batches 3 completed: 11/11 done, 0 failed"
    assert len(list((tmp_path / "state").glob("batch-*.json"))) == 3


def test_transient_batch_api_failures_are_retried_and_lasting_ones_raise() -> None:
    fake = FakeBatchAPI(polls_to_finish=1, fail_next=2)
    with fake as url:
        [result] = _backend(url).generate(_requests(["x"]))
        assert result.text == "echo: x"
        assert fake.calls[:3] == [("POST", "/v1/files")] * 3
        fake.fail_next = 10
        with pytest.raises(BackendError, match=r"POST /files: HTTP 500 \(gave up after 3"):
            _backend(url).generate(_requests(["y"]))


def test_a_crash_after_submission_resumes_the_same_batches(tmp_path: Path) -> None:
    """Run 1 submits, polls once and stops (batch_max_wait_s: 0, like a kill while polling);
    run 2 polls the saved batches: no new batch for their requests, every record once."""
    fake = FakeBatchAPI(polls_to_finish=None)  # never ends during run 1
    with fake as url:
        recipe = _recipe(tmp_path, url, batch_max_requests=16, batch_max_wait_s=0)
        runs = tmp_path / "runs"
        first = CliRunner().invoke(app, ["generate", str(recipe), "--out", str(runs)])
        # stopped resumably, like a spent budget, naming the batches to look for
        assert first.exit_code == BatchPending.exit_code == 3, first.output
        output = " ".join(first.output.split())
        assert "batches still running: batch_" in output
        assert re.search(r"OpenAI batch batch_\d created for (16|8) requests, input file", output)
        # the stage runs several batches of 16 at once: each was submitted and saved before
        # it was polled; none was written
        submitted = fake.count("POST", "/v1/batches")
        assert submitted >= 1
        state_dir = runs / load_recipe(recipe).name / "generate" / "backend-state"
        saved = [json.loads(p.read_text()) for p in state_dir.glob("batch-*.json")]
        assert sorted(s["batch_id"] for s in saved) == sorted(fake.batches)
        assert all(s["status"] == "validating" for s in saved)
        assert not RunStore(runs / load_recipe(recipe).name).shard_paths("generate")

        fake.polls_to_finish = 1  # the batches end at their next poll
        recipe.write_text(recipe.read_text().replace("batch_max_wait_s: 0", "batch_max_wait_s: 60"))
        result = run_recipe(load_recipe(recipe), runs, until="generate", quiet=True)
    # the saved batches were polled; only the requests of none went into new ones
    assert 0 < submitted <= 3
    assert fake.count("POST", "/v1/batches") == 3 and fake.count("POST", "/v1/files") == 3
    for batch in fake.batches:  # every batch of run 1 was polled to its end in run 2
        assert fake.batches[batch]["status"] == "completed"
    assert sorted(len(fake.input_lines(b)) for b in fake.batches) == [8, 16, 16]
    sent = [line["custom_id"] for b in fake.batches for line in fake.input_lines(b)]
    assert len(sent) == len(set(sent)) == 40  # no request in two batches
    records = _generated(result.run_dir)
    assert len(records) == 40 and all(r.status == "accepted" for r in records)
    assert sorted(r.lineage["request_index"] for r in records) == list(range(40))


def test_a_crash_between_creating_and_saving_a_batch_finds_it(tmp_path: Path) -> None:
    """Only the input file id was saved: the batch made from it is looked up, not made again."""
    fake = FakeBatchAPI(polls_to_finish=None)
    state_dir = tmp_path / "state"
    requests = _requests([f"q{i}" for i in range(5)])
    with fake as url:
        with pytest.raises(BatchPending):
            _backend(url, state_dir, batch_max_wait_s=0).generate(requests)
        [path] = state_dir.glob("batch-*.json")
        state = json.loads(path.read_text())
        path.write_text(json.dumps({**state, "batch_id": None, "status": None}))
        fake.polls_to_finish = 1
        results = _backend(url, state_dir).generate(requests)
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(5)]
    assert fake.count("POST", "/v1/batches") == 1 and fake.count("POST", "/v1/files") == 1
    assert fake.count("GET", "/v1/batches") == 1  # the lookup


def test_batch_settings_change_no_fingerprint_and_no_cache_key(tmp_path: Path) -> None:
    """Switching a run between sync and batch re-runs nothing and pays for nothing twice."""
    plain = load_recipe(_recipe(tmp_path, "http://127.0.0.1:9/v1", batch=False))
    batched = load_recipe(_recipe(tmp_path, "http://127.0.0.1:9/v1", batch_max_requests=7))
    assert plain.generation.backend.mode == "sync"  # type: ignore[union-attr]
    assert batched.generation.backend.mode == "batch"  # type: ignore[union-attr]
    assert fingerprints(batched, tmp_path / "runs") == fingerprints(plain, tmp_path / "runs")
    messages = [{"role": "user", "content": "hi"}]
    plain_dump = backend_dump(plain.generation.backend)
    assert cache_key(plain_dump, messages, 0) == cache_key(
        backend_dump(batched.generation.backend), messages, 0
    )
    # the sync dump is what it was before the batch fields existed: old cache keys hold
    assert not any(k.startswith("batch_") or k == "mode" for k in plain_dump)


def test_dry_run_prices_sync_and_batch(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "http://127.0.0.1:9/v1", n=10)
    runs = tmp_path / "runs"

    def total_costs() -> tuple[float, float]:
        result = CliRunner().invoke(app, ["generate", str(recipe), "--dry-run", "--out", str(runs)])
        assert result.exit_code == 0, result.output
        total = next(line for line in result.output.splitlines() if "total" in line)
        cells = [c.strip() for c in total.split("│") if c.strip()]
        prompt_tokens, completion = int(cells[3]), int(cells[4])
        assert completion == 10 * 20
        listed = (prompt_tokens * 1000 + completion * 2000) / 1e6
        assert float(cells[5]) == round(listed, 4)
        assert "this recipe runs in batch mode" in " ".join(result.output.split())
        return float(cells[5]), float(cells[6])

    sync_cost, batch_cost = total_costs()
    assert batch_cost == pytest.approx(sync_cost / 2, abs=1e-4)
    # a batch price in the recipe replaces the default half
    recipe.write_text(
        recipe.read_text().replace(
            "output_per_1m: 2000",
            "output_per_1m: 2000\n      batch_input_per_1m: 0\n      batch_output_per_1m: 2000",
        )
    )
    sync_again, batch_cost = total_costs()
    assert sync_again == sync_cost
    assert batch_cost == pytest.approx(10 * 20 * 2000 / 1e6, abs=1e-4)
