"""The cluster's ingress side (``api/cluster.py``) with a fake replica handle: the same routes over
`ClusterFront`, a replica failure retried once, then a clean 503. The real cluster: tests/slow/test_cluster.py."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from api.app import create_app
from api.cluster import Answerer, Cancellations, ClusterFront, _job_payload
from qa.config import Settings
from qa.pipeline import Job
from tests.conftest import live_server

ray_exceptions = pytest.importorskip("ray.exceptions", reason="the cluster extra is not installed")


class _Call:
    def __init__(self, fn, *args) -> None:  # noqa: ANN001
        self.fn, self.args = fn, args

    def result(self):  # noqa: ANN201
        return self.fn(*self.args)


class _Method:
    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn = fn

    def remote(self, *args) -> _Call:  # noqa: ANN002
        return _Call(self.fn, *args)


class FakeReplicas:
    """A DeploymentHandle's shape: ``handle.ask_batch.remote(jobs).result()``; fails ``failures`` times."""

    def __init__(self, pipeline, failures: int = 0) -> None:  # noqa: ANN001
        self.pipeline, self.failures, self.calls = pipeline, failures, 0
        self.ask_batch = _Method(self._ask_batch)

    def _ask_batch(self, jobs):  # noqa: ANN001, ANN202
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ray_exceptions.ActorDiedError()
        return self.pipeline.ask_batch([Job(*j[:4]) for j in jobs])  # j[4]: the row's id


def _app(tiny_pipeline, tmp_path, failures: int):  # noqa: ANN001, ANN202
    replicas = FakeReplicas(tiny_pipeline, failures)
    front = ClusterFront(
        tiny_pipeline.data, tiny_pipeline.embedder, tiny_pipeline.options, replicas, {"generator": "g"}
    )
    settings = Settings(source_dir=tmp_path / "s", index_dir=tmp_path / "i")
    return create_app(settings, pipeline=front, workers=2), replicas


def test_the_ingress_answers_like_the_single_process_through_the_front(tiny_pipeline, tmp_path):
    app, replicas = _app(tiny_pipeline, tmp_path, failures=1)  # one failure: retried on another replica
    with live_server(app) as base:
        reply = httpx.post(f"{base}/v1/ask", json={"question": "How many libraries does the council run?"}, timeout=30)
        bad = httpx.post(f"{base}/v1/ask", json={"question": "x" * 5000}, timeout=30)
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
    alone = tiny_pipeline.ask("How many libraries does the council run?")
    assert reply.status_code == 200 and reply.json()["answer"] == alone.text
    assert replicas.calls == 2
    assert bad.status_code == 422  # checked at the ingress: never sent to a replica
    assert ready["documents"] == len(tiny_pipeline.documents) and ready["generator"] == "g"


def test_a_batch_whose_replicas_fail_twice_gets_503_with_an_error_body(tiny_pipeline, tmp_path):
    app, _ = _app(tiny_pipeline, tmp_path, failures=2)
    with live_server(app) as base:
        reply = httpx.post(f"{base}/v1/ask", json={"question": "What budget did the council agree?"}, timeout=30)
    assert reply.status_code == 503 and "retry" in reply.json()["error"]["message"]
    assert reply.headers.get("retry-after")


def test_a_job_crosses_processes_without_its_cancel_event():
    import threading

    assert _job_payload(Job("q", 3, ("earlier",), 16, threading.Event())) == ("q", 3, ("earlier",), 16)


def test_a_row_given_up_at_the_ingress_reaches_the_cancellations_actor(tiny_pipeline):
    """The ingress's half: a row whose client gives up mid-batch is named to `Cancellations` (the
    other rows are not), and every row of the batch is forgotten once it returns."""
    actor = Cancellations()
    told: list[str] = []
    now = SimpleNamespace(  # an actor handle's shape, run at once
        cancel=SimpleNamespace(remote=lambda ids: (told.extend(ids), actor.cancel(ids))),
        forget=SimpleNamespace(remote=actor.forget),
    )
    seen: dict[str, list[str]] = {}

    class Slow(FakeReplicas):
        def _ask_batch(self, jobs):  # noqa: ANN001, ANN202
            seen["ids"] = [j[4] for j in jobs]
            deadline = time.monotonic() + 5
            while not actor.cancelled(seen["ids"][:1]) and time.monotonic() < deadline:
                time.sleep(0.01)
            return super()._ask_batch(jobs)

    front = ClusterFront(
        tiny_pipeline.data, tiny_pipeline.embedder, tiny_pipeline.options, Slow(tiny_pipeline), {}, now
    )
    gone, kept = threading.Event(), threading.Event()
    threading.Timer(0.2, gone.set).start()
    question = "How many libraries does the council run?"
    front.ask_batch([Job(question, cancel=gone), Job(question, cancel=kept)])
    assert len(set(seen["ids"])) == 2 and told == seen["ids"][:1]
    assert actor.cancelled(seen["ids"]) == []  # forgotten


def test_a_replica_stops_the_rows_cancelled_at_the_ingress(tiny_pipeline, monkeypatch):
    """The replica's half: rows `Cancellations` names get `Cancelled`, the others their answers."""
    import ray

    from qa.errors import Cancelled
    from qa.types import Answer

    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: ref)  # the fake handle returns values
    actor = Cancellations()
    actor.cancel(["gone"])
    answerer = object.__new__(Answerer)  # without loading models: the tiny pipeline answers
    answerer.pipeline, answerer.cancelled_rows = tiny_pipeline, 0
    answerer._cancellations = SimpleNamespace(cancelled=SimpleNamespace(remote=actor.cancelled))
    question = "How many libraries does the council run?"
    results = answerer.ask_batch([(question, None, (), None, "gone"), (question, None, (), None, "kept")])
    assert isinstance(results[0], Cancelled) and isinstance(results[1], Answer) and not results[1].abstained
    assert answerer.cancelled_rows == 1
