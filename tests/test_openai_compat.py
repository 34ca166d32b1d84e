"""OpenAI-compatible API: wire format, streaming, conversations, errors, auth, CORS, the official SDK."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from qa.config import Settings
from qa.errors import GeneratorError, QAError
from tests.conftest import live_server

Q = "How many libraries does the council run?"


@pytest.fixture
def client(tiny_pipeline):
    with TestClient(create_app(Settings(), pipeline=tiny_pipeline), raise_server_exceptions=False) as c:
        yield c


def _sse(text: str) -> list:
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_models(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and body["data"][0]["id"] == "newsqa" and body["data"][0]["object"] == "model"


def test_non_streaming_completion(client):
    r = client.post("/v1/chat/completions", json={"model": "newsqa", "messages": [{"role": "user", "content": Q}]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    msg = body["choices"][0]
    assert msg["message"]["role"] == "assistant" and msg["finish_reason"] == "stop"
    assert msg["message"]["content"].startswith("12: ") and "[1]" in msg["message"]["content"]
    assert body["citations"][0]["quote"] in msg["message"]["content"]
    u = body["usage"]
    assert (
        u["prompt_tokens"] > 0
        and u["completion_tokens"] > 0
        and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    )
    assert body["abstained"] is False


def test_stream_ends_with_exactly_the_non_streaming_answer(client):
    payload = {"model": "x", "messages": [{"role": "user", "content": Q}]}
    plain = client.post("/v1/chat/completions", json=payload).json()
    r = client.post("/v1/chat/completions", json={**payload, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = _sse(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == plain["choices"][0]["message"]["content"]
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 3  # streamed in pieces
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["citations"] == plain["citations"] and final["abstained"] is False


def test_generated_answer_that_fails_verification_streams_the_extractive_one(client, scripted):
    scripted._script = "The council runs 99 libraries."
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q}], "stream": True})
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in _sse(r.text))
    assert "99" not in content and content.startswith("12: ")


def test_follow_up_uses_the_conversation(client):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": Q},
        {"role": "assistant", "content": "12 [1]"},
        {"role": "user", "content": [{"type": "text", "text": "And how many swimming pools?"}]},
    ]
    body = client.post("/v1/chat/completions", json={"messages": messages}).json()
    assert body["choices"][0]["message"]["content"].startswith("3 swimming pools: ")


def test_abstention_in_chat(client):
    body = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Capital of Australia?"}]}
    ).json()
    assert (
        body["abstained"] is True
        and body["citations"] == []
        and "do not say" in body["choices"][0]["message"]["content"]
    )


def test_unknown_standard_fields_are_ignored(client):
    payload = {
        "messages": [{"role": "user", "content": Q}],
        "top_p": 0.5,
        "n": 1,
        "stop": ["x"],
        "presence_penalty": 0,
        "temperature": 0.7,
        "user": "u1",
        "max_tokens": 50,
        "stream_options": {"include_usage": True},
    }
    assert client.post("/v1/chat/completions", json=payload).status_code == 200


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, None),
        ({"messages": [{"role": "user", "content": "   "}]}, None),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": "x" * 1001}]}, None),
        ({"messages": "hello"}, "messages"),
    ],
)
def test_errors_use_openai_envelope(client, payload, param):
    r = client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    if param:
        assert err["param"] == param


def test_error_after_stream_started_is_an_sse_event(client, tiny_pipeline, monkeypatch):
    def boom(*a, **k):
        raise GeneratorError("the model server went away")

    monkeypatch.setattr(tiny_pipeline, "ask_batch", boom)
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q}], "stream": True})
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert "went away" in error["message"] and error["type"] == "generator_failed"


def test_unexpected_error_mid_stream_is_reported_without_details(client, tiny_pipeline, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret /path/to/file")

    monkeypatch.setattr(tiny_pipeline, "ask_batch", boom)
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q}], "stream": True})
    assert '"internal_error"' in r.text and "secret" not in r.text and r.text.rstrip().endswith("data: [DONE]")
    assert issubclass(GeneratorError, QAError)


def test_api_key_guards_v1_routes(tiny_pipeline):
    app = create_app(Settings(api_key="s3cret"), pipeline=tiny_pipeline)
    with TestClient(app) as c:
        for method, path in (
            ("get", "/v1/models"),
            ("post", "/v1/chat/completions"),
            ("post", "/v1/ask"),
            ("get", "/v1/documents"),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                r = getattr(c, method)(path, headers=headers, **({"json": {}} if method == "post" else {}))
                assert r.status_code == 401, (path, headers)
                assert r.json()["error"]["code"] == "invalid_api_key"
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/v1/ask", headers=ok, json={"question": Q}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_cors_origins(tiny_pipeline):
    app = create_app(Settings(cors_origins=["http://chat.example"]), pipeline=tiny_pipeline)
    with TestClient(app) as c:
        pre = c.options(
            "/v1/chat/completions",
            headers={
                "Origin": "http://chat.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.headers["access-control-allow-origin"] == "http://chat.example"
        other = c.get("/v1/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_chat_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert "innerHTML" not in html  # answers and documents are rendered as text


def test_official_openai_sdk_both_modes(tiny_pipeline):
    openai = pytest.importorskip("openai")
    with live_server(create_app(Settings(api_key="k"), pipeline=tiny_pipeline)) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k")
        assert [m.id for m in client.models.list()] == ["newsqa"]
        done = client.chat.completions.create(model="newsqa", messages=[{"role": "user", "content": Q}])
        assert done.choices[0].message.content.startswith("12: ")
        assert done.model_extra["citations"][0]["doc_id"] == "alpha"
        stream = client.chat.completions.create(model="newsqa", messages=[{"role": "user", "content": Q}], stream=True)
        pieces, final = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.choices and chunk.choices[0].finish_reason:
                final = chunk
        assert "".join(pieces) == done.choices[0].message.content
        assert final.model_extra["citations"] == done.model_extra["citations"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="wrong").models.list()
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="newsqa", messages=[{"role": "assistant", "content": "hi"}])
        assert httpx.get(f"{base}/healthz").status_code == 200
