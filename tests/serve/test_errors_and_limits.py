"""Bad requests get 4xx JSON errors in OpenAI's shape; the key and the limits hold."""

from __future__ import annotations

import httpx
import openai
import pytest

from synthtune.serve import ServeLimits, ServeServer, create_app
from synthtune.serve.models import ServedModels

KEY = "sk-test-a1b2c3"
MESSAGES = [{"role": "user", "content": "Patient 3 reports"}]


def _client(server: ServeServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=60)


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_model_is_404_naming_the_served_models(server: ServeServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        _client(server).chat.completions.create(model="gpt-4", messages=MESSAGES)
    error = _error(caught.value)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "tiny" in error["message"] and "medical" in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 49}, "max_tokens"),  # cap is 48
        ({"temperature": -1}, "temperature"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    server: ServeServer, extra: dict, param: str
) -> None:
    body = {"model": "tiny", "messages": MESSAGES, **extra}
    response = httpx.post(f"{server.url}/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param.split(".")[0] in error["message"]


def test_malformed_json_is_400(server: ServeServer) -> None:
    response = httpx.post(
        f"{server.url}/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_prompt_over_the_limit_is_400_context_length(server: ServeServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(server).completions.create(model="tiny", prompt="Patient " * 200, max_tokens=4)
    error = _error(caught.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"


def test_several_prompts_in_one_request_are_refused(server: ServeServer) -> None:
    with pytest.raises(openai.BadRequestError):
        _client(server).completions.create(model="tiny", prompt=["a", "b"], max_tokens=4)


@pytest.fixture(scope="module")
def keyed(served: ServedModels):
    with ServeServer(create_app(served, api_key=KEY)) as running:
        yield running


def test_api_key_is_enforced_on_every_endpoint(keyed: ServeServer) -> None:
    for key in ("wrong", KEY + "x"):
        with pytest.raises(openai.AuthenticationError) as caught:
            _client(keyed, key).models.list()
        assert _error(caught.value)["code"] == "invalid_api_key"
        assert KEY not in caught.value.response.text
    no_header = httpx.post(
        f"{keyed.url}/chat/completions", json={"model": "tiny", "messages": MESSAGES}
    )
    assert no_header.status_code == 401
    good = _client(keyed, KEY)
    assert [m.id for m in good.models.list().data] == ["tiny", "medical"]
    reply = good.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=4, temperature=0
    )
    assert reply.usage.completion_tokens > 0


def test_requests_over_the_concurrency_limit_get_429(served: ServedModels) -> None:
    limits = ServeLimits(max_tokens=48, max_concurrent=1)
    with ServeServer(create_app(served, limits=limits)) as running:
        client = _client(running)
        stream = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=48, temperature=0, stream=True
        )
        next(iter(stream))  # the first request now holds the only slot
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4)
        assert caught.value.response.headers["retry-after"] == "1"
        list(stream)
        stream.close()
        # the slot is free again once the stream ended
        reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4)
        assert reply.choices[0].finish_reason in {"stop", "length"}


def test_the_api_description_is_behind_the_key(keyed: ServeServer, server: ServeServer) -> None:
    root = keyed.url.removesuffix("/v1")
    assert httpx.get(f"{root}/openapi.json").status_code == 401
    assert httpx.get(f"{root}/docs").status_code == 404  # cannot send a key: off with a key
    described = httpx.get(f"{root}/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert described.status_code == 200 and "/v1/chat/completions" in described.json()["paths"]
    open_root = server.url.removesuffix("/v1")  # no key set: the usual FastAPI pages
    assert httpx.get(f"{open_root}/openapi.json").status_code == 200


@pytest.mark.parametrize("seed", [1e30, -1, 2**64])
def test_an_out_of_range_seed_is_400_not_500(server: ServeServer, seed: float) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "seed": seed, "max_tokens": 2}
    response = httpx.post(f"{server.url}/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seed"


def test_a_body_over_the_limit_is_413_declared_or_chunked(served: ServedModels) -> None:
    limits = ServeLimits(max_body_bytes=2_000)
    with ServeServer(create_app(served, limits=limits)) as small:
        big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 5_000}]}
        declared = httpx.post(f"{small.url}/chat/completions", json=big, timeout=60)
        assert declared.status_code == 413
        error = declared.json()["error"]
        assert error["code"] == "body_too_large" and "2,000 bytes" in error["message"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        streamed = httpx.post(
            f"{small.url}/chat/completions",
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert streamed.status_code == 413
        ok = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
        assert httpx.post(f"{small.url}/chat/completions", json=ok, timeout=60).status_code == 200
