"""Requests queued while the worker is busy run as one batch; each row ends on its own."""

from __future__ import annotations

import asyncio
import threading

from synthtune.serve.generation import Outcome, SamplingParams, split_at_stop
from synthtune.serve.models import ServedModels

PROMPTS = [f"Patient {i} reports a temperature of" for i in range(6)]


async def _reply(served: ServedModels, name: str, prompt: str, params: SamplingParams):
    outcome = Outcome()
    text = "".join([d async for d in served.generator.stream(name, prompt, params, outcome)])
    return text, outcome


async def _all(served: ServedModels, name: str, params: list[SamplingParams]):
    """Queue every request while the worker is held, then let it go: one deterministic drain."""
    generator = served.generator
    hold = threading.Event()
    generator.executor.submit(hold.wait)
    tasks = [
        asyncio.create_task(_reply(served, name, p, q))
        for p, q in zip(PROMPTS, params, strict=True)
    ]
    await asyncio.sleep(0)  # one scheduling turn: each task has queued its request
    assert len(generator.pending) == len(params)
    hold.set()
    return await asyncio.gather(*tasks)


def test_queued_requests_batch_and_match_their_single_replies(served: ServedModels) -> None:
    generator = served.generator
    greedy = [SamplingParams(max_tokens=12 + 4 * i, temperature=0) for i in range(6)]
    alone = [
        asyncio.run(_reply(served, "tiny", prompt, p))
        for prompt, p in zip(PROMPTS, greedy, strict=True)
    ]
    before = len(generator.batch_sizes)
    together = asyncio.run(_all(served, "tiny", greedy))
    assert generator.batch_sizes[before:] == [6]
    for (text, outcome), (single, single_outcome), params in zip(
        together, alone, greedy, strict=True
    ):
        assert text == single
        assert outcome.completion_tokens == single_outcome.completion_tokens
        assert outcome.completion_tokens <= params.max_tokens
        assert outcome.finish_reason == single_outcome.finish_reason


def test_different_settings_and_seeded_requests_do_not_share_a_batch(
    served: ServedModels,
) -> None:
    generator = served.generator
    params = [
        SamplingParams(max_tokens=8, temperature=0),
        SamplingParams(max_tokens=8, temperature=0),
        SamplingParams(max_tokens=8, temperature=0.9),
        SamplingParams(max_tokens=8, temperature=0, seed=1),
        SamplingParams(max_tokens=8, temperature=0),
        SamplingParams(max_tokens=8, temperature=0.9),
    ]
    before = len(generator.batch_sizes)
    asyncio.run(_all(served, "tiny", params))
    # greedy (0, 1, 4) together, then the sampled pair (2, 5), then the seeded one alone
    assert generator.batch_sizes[before:] == [3, 2, 1]


def test_stop_string_hold_back() -> None:
    assert split_at_stop("abc##d", ("##",)) == ("abc", True, 0)
    assert split_at_stop("abc#", ("##",)) == ("abc#", False, 1)
    assert split_at_stop("abc", ("##",)) == ("abc", False, 0)
    assert split_at_stop("x END", ("END", "ENDING")) == ("x ", True, 0)
    assert split_at_stop("x ENDI", ("ENDING",)) == ("x ENDI", False, 4)
