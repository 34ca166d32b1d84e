"""The batching model worker and `Pipeline.ask_batch`, with fakes (the real models: tests/slow/test_batching.py)."""

from __future__ import annotations

import concurrent.futures
import threading

import httpx

from api.app import create_app
from qa.config import Settings
from qa.errors import BadQuestion, Cancelled
from qa.generate import GenerationRow, ScriptedGenerator, generate_many
from qa.pipeline import Job, Pipeline
from tests.conftest import live_server, tiny_reader

QUESTIONS = [
    "How many libraries does the council run?",
    "What budget did the council agree?",
    "When was the library service founded?",
    "How many penguins live in the zoo?",  # abstains: in no passage
]


def _key(answer):  # noqa: ANN001, ANN202
    return answer.text, answer.mode, [(c.doc_id, c.start, c.end) for c in answer.citations]


def test_a_batch_answers_each_question_as_if_asked_alone(tiny_index, embedder):
    gen = ScriptedGenerator(lambda q: "The council runs 12 libraries." if "libraries" in q else "")
    pipeline = Pipeline(tiny_index, embedder, gen, reader=tiny_reader())
    alone = [_key(pipeline.ask(q)) for q in QUESTIONS]
    batched = [_key(a) for a in pipeline.ask_batch([Job(q) for q in QUESTIONS])]
    assert batched == alone
    assert alone[0][1].value == "generated" and alone[3][1].value == "abstained"


def test_a_bad_or_cancelled_row_gets_its_own_error_and_the_others_their_answers(tiny_pipeline):
    stop = threading.Event()
    stop.set()
    results = tiny_pipeline.ask_batch([Job(" "), Job(QUESTIONS[0]), Job(QUESTIONS[1], cancel=stop), Job("x" * 5000)])
    assert isinstance(results[0], BadQuestion) and isinstance(results[3], BadQuestion)
    assert results[1].text.startswith("12")
    assert isinstance(results[2], Cancelled)


def test_generate_many_stops_rows_on_their_own():
    gen = ScriptedGenerator("One.\nTwo.")
    stop = threading.Event()
    stop.set()
    rows = [GenerationRow([{"role": "user", "content": "Question: a"}]), GenerationRow([], cancel=stop)]
    assert generate_many(gen, rows, max_new_tokens=8) == ["One.\nTwo.", ""]
    assert len(gen.calls) == 1  # the cancelled row never reached the model
    assert rows[0].done("One.\nTw") and not rows[0].done("One.")
    assert GenerationRow([], should_stop=lambda text: "£" in text).done("It cost £")


def test_requests_arriving_together_share_one_batch(tiny_pipeline, tmp_path, monkeypatch):
    sizes: list[int] = []
    real = tiny_pipeline.ask_batch

    def recording(jobs):  # noqa: ANN001, ANN202
        sizes.append(len(jobs))
        return real(jobs)

    monkeypatch.setattr(tiny_pipeline, "ask_batch", recording)
    settings = Settings(source_dir=tmp_path / "s", index_dir=tmp_path / "i", batch_window_ms=200, max_batch=8)
    app = create_app(settings, pipeline=tiny_pipeline)
    with live_server(app) as base, concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda q: httpx.post(f"{base}/v1/ask", json={"question": q}, timeout=30), QUESTIONS))
        metrics = httpx.get(f"{base}/metrics").text
    assert [r.status_code for r in replies] == [200] * 4
    assert replies[0].json()["answer"].startswith("12") and replies[3].json()["abstained"]
    assert sum(sizes) == 4 and max(sizes) > 1  # 4 requests within the 200 ms window: fewer than 4 batches
    assert f"qa_batch_size_count {float(len(sizes))}" in metrics


def test_max_batch_bounds_a_batch(tiny_pipeline, tmp_path, monkeypatch):
    sizes: list[int] = []
    real = tiny_pipeline.ask_batch
    monkeypatch.setattr(tiny_pipeline, "ask_batch", lambda jobs: sizes.append(len(jobs)) or real(jobs))
    settings = Settings(source_dir=tmp_path / "s", index_dir=tmp_path / "i", batch_window_ms=200, max_batch=2)
    app = create_app(settings, pipeline=tiny_pipeline)
    with live_server(app) as base, concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda q: httpx.post(f"{base}/v1/ask", json={"question": q}, timeout=30), QUESTIONS))
    assert all(r.status_code == 200 for r in replies)
    assert sum(sizes) == 4 and max(sizes) <= 2


def test_the_worker_gives_memory_back_when_idle_and_a_request_queued_meanwhile_is_answered(
    tiny_pipeline, tmp_path, monkeypatch
):
    import api.gate

    seen_waiting: list[int] = []
    app = create_app(Settings(source_dir=tmp_path / "s", index_dir=tmp_path / "i"), pipeline=tiny_pipeline)

    def slow_trim() -> bool:  # the first trim lasts until the next request has queued behind it
        if not seen_waiting:
            for _ in range(500):
                if app.state.gate.waiting:
                    break
                threading.Event().wait(0.01)
        seen_waiting.append(app.state.gate.waiting)
        return True

    monkeypatch.setattr(api.gate, "trim_heap", slow_trim)
    with live_server(app) as base:
        first = httpx.post(f"{base}/v1/ask", json={"question": QUESTIONS[0]}, timeout=30)
        second = httpx.post(f"{base}/v1/ask", json={"question": QUESTIONS[1]}, timeout=30)
    assert first.status_code == 200 and first.json()["answer"].startswith("12")
    assert second.status_code == 200 and second.json()["answer"].startswith("£2.5")
    assert seen_waiting[0] == 1  # the second request queued while the idle worker was trimming
    assert len(seen_waiting) == 2  # and once more after it was answered


def test_with_two_workers_two_batches_run_at_once_and_every_request_is_answered(tiny_pipeline, tmp_path, monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()
    real = tiny_pipeline.ask_batch

    def slow(jobs):  # noqa: ANN001, ANN202 - a remote replica's batch: it takes a while
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.3)
        try:
            return real(jobs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(tiny_pipeline, "ask_batch", slow)
    settings = Settings(source_dir=tmp_path / "s", index_dir=tmp_path / "i", batch_window_ms=20, max_batch=2)
    app = create_app(settings, pipeline=tiny_pipeline, workers=2)
    with live_server(app) as base, concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(lambda q: httpx.post(f"{base}/v1/ask", json={"question": q}, timeout=30), QUESTIONS * 2)
        )
    assert [r.status_code for r in replies] == [200] * 8
    assert [r.json()["answer"][:2] for r in replies[:4]] == [r.json()["answer"][:2] for r in replies[4:]]
    assert most[0] == 2  # two batches at once, never more
