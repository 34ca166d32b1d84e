"""HTTP contract and error handling, on the fake pipeline."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from qa.config import Settings


@pytest.fixture
def client(tiny_pipeline):
    with TestClient(create_app(Settings(), pipeline=tiny_pipeline), raise_server_exceptions=False) as c:
        yield c


def test_ask_contract(client, tiny_pipeline):
    r = client.post("/v1/ask", json={"question": "How many libraries does the council run?"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"answer", "abstained", "citations", "passages", "answer_mode", "timings_ms", "index_version"}
    assert body["abstained"] is False and body["answer_mode"] in ("generated", "extractive")
    assert body["citations"] and set(body["citations"][0]) == {"id", "doc_id", "title", "quote", "start", "end"}
    for c in body["citations"]:
        doc = client.get(f"/v1/documents/{c['doc_id']}").json()
        assert doc["text"][c["start"] : c["end"]] == c["quote"]
    assert set(body["passages"][0]) == {"doc_id", "title", "start", "end", "text", "score"}
    assert set(body["timings_ms"]) == {"retrieve", "read", "decide", "generate", "verify", "total"}


def test_abstention_over_http(client):
    body = client.post("/v1/ask", json={"question": "What is the capital of Australia?"}).json()
    assert body["abstained"] is True and body["answer_mode"] == "abstained" and body["citations"] == []


def test_documents(client):
    docs = client.get("/v1/documents").json()["documents"]
    assert {d["doc_id"] for d in docs} == {"alpha", "beta"}
    assert all(d["length"] > 0 and d["title"] for d in docs)
    r = client.get("/v1/documents/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"question": ""}, "question"),
        ({"question": "   "}, "empty"),
        ({"question": "x" * 1001}, "question"),
        ({"question": 123}, "question"),
        ({"question": ["a"]}, "question"),
        ({"question": "ok", "top_k": 0}, "top_k"),
        ({"question": "ok", "top_k": 21}, "top_k"),
        ({"question": "ok", "top_k": "3"}, "top_k"),
        ({"question": "ok", "extra": 1}, "extra"),
        ({}, "question"),
        ([], "body"),
        ("just a string", "body"),
    ],
)
def test_bad_input_is_a_clear_422(client, payload, fragment):
    r = client.post("/v1/ask", json=payload)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] in ("invalid_request", "bad_question")
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"\xff\xfe", b'{"question": "\\ud800"}', b'{"question": "a\\u0000b"}']
)
def test_malformed_bodies_never_500(client, raw):
    r = client.post("/v1/ask", content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    assert "error" in r.json() or "answer" in r.json()


def test_unknown_route_and_method(client):
    assert client.get("/nope").json()["error"]["type"] == "not_found"
    r = client.get("/v1/ask")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["documents"] == 2


def test_not_ready_until_loaded(tmp_path):
    settings = Settings(index_dir=tmp_path / "missing", generator="none")
    with TestClient(create_app(settings)) as c:
        c.app.state.qa.ready_event.wait(60)
        r = c.get("/readyz")
        assert r.status_code == 503
        assert "qa index build" in r.json()["error"]["message"]
        assert r.headers["retry-after"]
        r = c.post("/v1/ask", json={"question": "hi?"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        assert c.get("/healthz").status_code == 200


def test_openapi_declares_schemas_and_errors(client):
    spec = client.get("/openapi.json").json()
    ask = spec["paths"]["/v1/ask"]["post"]
    assert {"200", "422", "503"} <= set(ask["responses"])
    assert "AskResponse" in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["AskRequest"]["properties"]["question"]["maxLength"] == 1000
    assert client.get("/docs").status_code == 200
