"""The server driven by the official ``openai`` client on loopback."""

from __future__ import annotations

import openai
import pytest

from synthtune.llm.backends.transformers import render_chat
from synthtune.serve import ServeServer
from synthtune.serve.models import ServedModels

MESSAGES = [{"role": "user", "content": "Patient 3 reports a temperature of"}]


def _client(server: ServeServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=60)


def _chat(client: openai.OpenAI, model: str = "tiny", **kwargs):
    options = {"temperature": 0, "max_tokens": 24, **kwargs}
    return client.chat.completions.create(model=model, messages=MESSAGES, **options)


def test_models_lists_base_and_adapters(server: ServeServer) -> None:
    listed = _client(server).models.list()
    assert [m.id for m in listed.data] == ["tiny", "medical"]
    assert {m.object for m in listed.data} == {"model"}


def test_chat_completion_counts_prompt_and_reply_tokens(
    server: ServeServer, served: ServedModels
) -> None:
    reply = _chat(_client(server))
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    tokenizer = served.generator.tokenizer
    prompt = render_chat(tokenizer, MESSAGES)
    assert reply.usage.prompt_tokens == len(tokenizer(prompt)["input_ids"])
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_greedy_is_deterministic_and_length_is_reported(server: ServeServer) -> None:
    client = _client(server)
    first, second = _chat(client, max_tokens=5), _chat(client, max_tokens=5)
    assert first.choices[0].message.content == second.choices[0].message.content
    if first.usage.completion_tokens == 5:
        assert first.choices[0].finish_reason == "length"


def test_completion_continues_the_raw_prompt(server: ServeServer) -> None:
    client = _client(server)
    reply = client.completions.create(
        model="tiny", prompt="Patient 7 reports", temperature=0, max_tokens=16
    )
    assert reply.object == "text_completion"
    assert reply.choices[0].text
    echoed = client.completions.create(
        model="tiny", prompt="Patient 7 reports", temperature=0, max_tokens=16, echo=True
    )
    assert echoed.choices[0].text == "Patient 7 reports" + reply.choices[0].text


@pytest.mark.parametrize("model", ["tiny", "medical"])
def test_streamed_chat_chunks_join_to_the_plain_reply(server: ServeServer, model: str) -> None:
    client = _client(server)
    plain = _chat(client, model, max_tokens=40)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            temperature=0,
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3


def test_streamed_completion_chunks_join_to_the_plain_text(server: ServeServer) -> None:
    client = _client(server)
    kwargs = {"model": "tiny", "prompt": "Patient 2 has", "temperature": 0, "max_tokens": 30}
    plain = client.completions.create(**kwargs)
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kwargs))
    assert streamed == plain.choices[0].text


def test_stop_string_cuts_plain_and_streamed_replies_alike(server: ServeServer) -> None:
    client = _client(server)
    full = _chat(client, max_tokens=40).choices[0].message.content
    assert len(full) > 8
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    cut = full[: full.index(stop)]
    reply = _chat(client, max_tokens=40, stop=[stop])
    assert reply.choices[0].message.content == cut
    assert reply.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="tiny", messages=MESSAGES, temperature=0, max_tokens=40, stop=[stop], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == cut


def test_adapter_selected_by_model_name_changes_the_reply(server: ServeServer) -> None:
    client = _client(server)
    base = _chat(client, "tiny").choices[0].message.content
    tuned = _chat(client, "medical").choices[0].message.content
    assert tuned != base
    # switching back restores the base exactly (the adapter is disabled, not merged)
    assert _chat(client, "tiny").choices[0].message.content == base


def test_sampling_with_a_seed_repeats(server: ServeServer) -> None:
    client = _client(server)
    kwargs = {"temperature": 1.5, "seed": 5, "max_tokens": 20}
    assert (
        _chat(client, **kwargs).choices[0].message.content
        == _chat(client, **kwargs).choices[0].message.content
    )
