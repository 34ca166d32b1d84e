"""The README's quick start, run for real: `qa serve` in a subprocess, then the README's curl request."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.slow.conftest import ROOT, spawned_server


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(real_index_dir, server_log):
    with spawned_server({"QA_INDEX_DIR": str(real_index_dir)}, server_log) as (proc, base):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, server_log.read_text()
            time.sleep(0.5)
        else:
            pytest.fail("server did not become ready in 180 s")
        yield base


def test_readme_curl_question(server):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"curl -s localhost:8000/v1/ask .*?-d '(\{.*?\})'", readme)
    assert match, "README lost its curl example"
    payload = json.loads(match.group(1))
    body = httpx.post(f"{server}/v1/ask", json=payload, timeout=60).json()
    assert body["abstained"] is False
    assert "£1 billion" in body["answer"] or "£1bn" in body["answer"]
    assert body["citations"] and any("£1 billion" in c["quote"] for c in body["citations"])
    for c in body["citations"]:
        doc = httpx.get(f"{server}/v1/documents/{c['doc_id']}", timeout=10).json()
        assert doc["text"][c["start"] : c["end"]] == c["quote"]


def test_server_answers_bad_input_with_4xx(server):
    r = httpx.post(
        f"{server}/v1/ask", content=b'{"question": ', headers={"content-type": "application/json"}, timeout=10
    )
    assert r.status_code == 422 and "error" in r.json()


def test_openai_sdk_against_the_real_server(server):
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    first = [
        {"role": "user", "content": "How many GP practices was CSC contracted to install a care records system at?"}
    ]
    done = client.chat.completions.create(model="newsqa", messages=first)
    assert "4,400" in done.choices[0].message.content and done.model_extra["citations"]
    follow = [
        *first,
        {"role": "assistant", "content": done.choices[0].message.content},
        {"role": "user", "content": "And how many trusts?"},
    ]
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="newsqa", messages=follow, stream=True)
        if c.choices
    ]
    assert "171" in "".join(pieces)


def test_the_mission_example_through_the_sdk(server):
    """README's example through the OpenAI SDK: the loosely worded question is answered with the NHS's
    £1bn, in the quote's words."""
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    done = client.chat.completions.create(
        model="newsqa", messages=[{"role": "user", "content": "How much is CSC saving?"}]
    )
    text = done.choices[0].message.content
    assert ("£1 billion" in text or "£1bn" in text) and "NHS" in text, text
    assert done.model_extra["citations"]


def test_the_mission_example_sdk_follow_up(server):
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    first = [{"role": "user", "content": "How much is CSC saving?"}]
    text = client.chat.completions.create(model="newsqa", messages=first).choices[0].message.content
    follow = [
        *first,
        {"role": "assistant", "content": text},
        {"role": "user", "content": "And how much across the whole programme?"},
    ]
    again = client.chat.completions.create(model="newsqa", messages=follow).choices[0].message.content
    assert "£1.8" in again, again


def test_the_server_log_is_one_json_object_per_line(server, server_log):
    # Loading the models once drew transformers' "Loading weights" bars into it (index.embedder.quiet_loading).
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    lines = [line for line in server_log.read_text().splitlines() if line.strip()]
    assert any('"msg": "ready: ' in line for line in lines)
    for line in lines:
        assert isinstance(json.loads(line), dict), line
