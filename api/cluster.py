"""The same HTTP API from a Ray Serve application with N answering replicas (``make serve-cluster``).

::

    client ─HTTP─> Serve proxy ─> Ingress, 1 replica: `api.app`'s FastAPI app (every route, the
                                  OpenAI ones, streaming, the chat page, errors), its queue, batching
                                  and deadlines, and the one writer of documents; no models
                                     │ a batch of questions (`Pipeline.ask_batch`), up to N at once
                                     v
                                  Answerer, N replicas: the embedder, reader, decision and generator,
                                  loaded once each; they follow the index version the writer makes live

Ray is an optional extra (``pip install -e '.[cluster]'``); nothing else imports this module. Without
``RAY_ADDRESS`` a local Ray cluster is started; with it, the application runs on that cluster, whose
nodes must all see ``QA_INDEX_DIR`` (one machine, or a shared filesystem).

Documents: ``POST``/``DELETE /v1/documents`` reach the ingress, which applies them one at a time
(`api.routers.documents`: one article embedded, a new index version written atomically). Each
answering replica watches ``CURRENT`` and, when it names another version, follows it
(`index.store.follow`): a document write is a small delta version, which the replica applies in memory,
updating its retriever rather than rebuilding it; a full version is loaded whole. A replica that dies
mid-batch is retried once on another; then the batch's requests get 503 with an error body and
``Retry-After``, and Serve starts a new replica.

Cancellation: a request whose deadline passes or whose client leaves is answered 504 (or dropped) by
the ingress at once, as in one process; its row id goes to the `Cancellations` actor, which the replica
answering it polls every 50 ms, and the row stops within a decoding step there too.

Example::

    qa serve-cluster --replicas 2 --port 8000      # then: curl localhost:8000/v1/ask -d '{"question": …}'
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from index.store import IndexData, current_version, follow, load_index
from qa.config import Settings
from qa.errors import NotReady, QAError
from qa.pipeline import IndexedDocuments, Job, PipelineOptions, check_question, count_tokens
from qa.types import Answer

log = logging.getLogger("ray.serve")  # what Serve's replicas log (with their ids and times)
APP_NAME = "newsqa"
FOLLOW_EVERY_S = 0.25  # how often an answering replica looks at CURRENT
CANCELLATIONS = "newsqa-cancellations"  # the named actor that carries cancelled rows to the replicas
CANCEL_POLL_S = 0.05  # how often the ingress looks for given-up rows, and a replica for cancelled ones


def _settings_payload(settings: Settings) -> dict:
    """Settings as plain data for the replicas, with paths made absolute (Ray workers run elsewhere)."""
    raw = settings.model_dump(mode="json")
    for key in ("source_dir", "index_dir", "cache_dir", "embedder_path", "generator_path"):
        if raw.get(key):
            raw[key] = str(Path(raw[key]).resolve())
    return raw


def _job_payload(job: Job) -> tuple:
    """A job without its cancel event (a `threading.Event` does not cross processes: `Cancellations`)."""
    return (job.question, job.top_k, tuple(job.history), job.max_new_tokens)


class Cancellations:
    """The rows whose clients gave up (deadline passed, client gone), by row id: a named Ray actor that
    the ingress tells and the replicas answering those rows poll, so that a row stops within a decoding
    step on its replica as it does in the one-process worker (`api.gate`)."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def cancel(self, ids: Sequence[str]) -> None:
        self._ids.update(ids)

    def cancelled(self, ids: Sequence[str]) -> list[str]:
        return [i for i in ids if i in self._ids]

    def forget(self, ids: Sequence[str]) -> None:
        self._ids.difference_update(ids)


class Answerer:
    """An answering replica: a whole `Pipeline`, following the live index version."""

    def __init__(self, settings: dict, torch_threads: int) -> None:
        from qa.pipeline import Pipeline

        self.settings = Settings(**{**settings, "torch_threads": torch_threads})
        self.pipeline = Pipeline.from_settings(self.settings, progress=log.info)
        self._lock = threading.Lock()
        self._cancellations = None
        self.cancelled_rows = 0
        threading.Thread(target=self._follow, name="qa-follow-index", daemon=True).start()

    def _follow(self) -> None:
        while True:
            time.sleep(FOLLOW_EVERY_S)
            try:
                self.refresh()
            except QAError as exc:  # a version being replaced or broken: keep answering from ours
                log.warning("index not followed: %s", exc)
            except Exception:  # noqa: BLE001 - anything else: logged, and the next look tries again
                log.exception("index not followed")

    @property
    def version(self) -> str:
        """The index version answering (every answer names it too: ``Answer.index_version``)."""
        return self.pipeline.data.version

    def refresh(self) -> str:
        """Follow the live version if it is not the one answering (`index.store.follow`: a delta on
        this one is applied in memory, the retriever updated; anything else is loaded whole); returns
        the version answering."""
        live = current_version(Path(self.settings.index_dir)).name
        if live != self.version:
            with self._lock:
                if live != self.version:
                    started = time.perf_counter()
                    data, rows_from = follow(self.pipeline.data, Path(self.settings.index_dir), self.pipeline.embedder)
                    self.pipeline = self.pipeline.with_data(data, rows_from)
                    how = "loaded" if rows_from is None else "applied"
                    log.info(
                        "answering from index version %s (%s in %.2f s)",
                        data.version,
                        how,
                        time.perf_counter() - started,
                    )
        return self.version

    def ask_batch(self, jobs: Sequence[tuple]) -> list[Answer | QAError]:
        """Answer a batch of ``_job_payload`` tuples, each followed by its row id; a row cancelled at the
        ingress (`Cancellations`) stops within a decoding step and gets `Cancelled`."""
        from qa.errors import Cancelled

        events = [threading.Event() for _ in jobs]
        ids = {job[4]: event for job, event in zip(jobs, events, strict=True) if len(job) > 4}
        done, polled = threading.Event(), threading.Event()
        if ids:
            threading.Thread(target=self._watch, args=(ids, done, polled), name="qa-cancel", daemon=True).start()
            polled.wait(1)  # the first poll: a row given up while it queued does not start
        try:
            results = self.pipeline.ask_batch([Job(*job[:4], cancel=e) for job, e in zip(jobs, events, strict=True)])
        finally:
            done.set()
        self.cancelled_rows += sum(isinstance(r, Cancelled) for r in results)
        return results

    def _watch(self, ids: dict, done: threading.Event, polled: threading.Event) -> None:
        """Set the events of ``ids``'s rows as `Cancellations` names them, every `CANCEL_POLL_S` until
        ``done``; ``polled`` is set after the first poll (or on failure)."""
        import ray

        try:
            if self._cancellations is None:
                self._cancellations = ray.get_actor(CANCELLATIONS)
            while True:
                for row in ray.get(self._cancellations.cancelled.remote(list(ids)), timeout=5):
                    ids[row].set()
                polled.set()
                if done.wait(CANCEL_POLL_S):
                    return
        except Exception as exc:  # noqa: BLE001 - no ingress actor (a bare replica) or it is restarting
            log.warning("cancellations not followed for this batch: %s", type(exc).__name__)
            self._cancellations = None  # looked up again for the next batch (a restarted ingress makes a new one)
        finally:
            polled.set()

    def info(self) -> dict:
        generator = self.pipeline.generator
        return {
            "generator": generator.model_id if generator else None,
            "tokenizer": getattr(generator, "tokenizer", None),
            "version": self.version,
            "cancelled_rows": self.cancelled_rows,
            "pid": os.getpid(),
            "node": _node_id(),
        }


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (tests of the class itself)
        return None


class _Named:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id


class ClusterFront(IndexedDocuments):
    """What the routes ask of a `Pipeline`, in an ingress whose answering runs on the replicas: the
    index's documents (for citations' titles, the documents routes and /readyz), the question checks,
    token counts, and ``ask_batch``, sent to a replica."""

    def __init__(  # noqa: PLR0913
        self,
        data: IndexData,
        embedder,
        options: PipelineOptions,
        answerer,
        info: dict,
        cancellations=None,  # noqa: ANN001
    ) -> None:
        self.data = data
        self.embedder = embedder
        self.options = options
        self.answerer = answerer
        self.info = info
        self.cancellations = cancellations  # the `Cancellations` actor's handle
        self.generator = _Named(info["generator"]) if info.get("generator") else None

    def with_data(self, data: IndexData, rows_from=None) -> ClusterFront:  # noqa: ANN001, ARG002 - no retriever here
        return ClusterFront(data, self.embedder, self.options, self.answerer, self.info, self.cancellations)

    def check_question(self, question: str, top_k: int | None) -> tuple[str, int]:
        return check_question(question, top_k, self.options)

    def count_tokens(self, text: str) -> int:
        return count_tokens(text, self.info.get("tokenizer"))

    def ask_batch(self, jobs: Sequence[Job]) -> list[Answer | QAError]:
        """One replica answers the batch (tried twice: a replica may die under it)."""
        from ray.exceptions import RayError

        ids = [uuid.uuid4().hex for _ in jobs]
        payload = [(*_job_payload(j), row) for j, row in zip(jobs, ids, strict=True)]
        done = threading.Event()
        watcher = None
        if self.cancellations is not None and any(j.cancel is not None for j in jobs):
            watcher = threading.Thread(target=self._watch, args=(jobs, ids, done), name="qa-cancel", daemon=True)
            watcher.start()
        try:
            for attempt in (1, 2):
                try:
                    return self.answerer.ask_batch.remote(payload).result()
                except RayError as exc:
                    log.warning("answering replica failed (attempt %d): %s", attempt, type(exc).__name__)
            return [NotReady("an answering replica failed twice on this question; retry in a few seconds")] * len(jobs)
        finally:
            if watcher is not None:
                done.set()
                watcher.join()
                self.cancellations.forget.remote(ids)

    def _watch(self, jobs: Sequence[Job], ids: list[str], done: threading.Event) -> None:
        """Tell `Cancellations` about each row whose client gives up while the batch runs."""
        told: set[str] = set()
        while True:  # at once first: a row given up while it queued is named before its batch starts
            given_up = [
                r
                for j, r in zip(jobs, ids, strict=True)
                if j.cancel is not None and j.cancel.is_set() and r not in told
            ]
            if given_up:
                self.cancellations.cancel.remote(given_up)
                told.update(given_up)
            if done.wait(CANCEL_POLL_S):
                return


class Ingress:
    """The ingress replica: builds `api.app`'s FastAPI app over a `ClusterFront` once it is constructed."""

    async def __init__(self, answerer, settings: dict, replicas: int) -> None:  # noqa: ANN001 - a DeploymentHandle
        import asyncio

        from index.embedder import SentenceTransformerEmbedder

        self.settings = Settings(**settings)
        self.replicas = replicas
        embedder = SentenceTransformerEmbedder(  # loaded only if a document is added here
            Path(self.settings.embedder_path) if self.settings.embedder_path else None, device="cpu"
        )
        import ray

        data = await asyncio.to_thread(load_index, Path(self.settings.index_dir), embedder)
        info = await answerer.info.remote()
        cancellations = ray.remote(Cancellations).options(name=CANCELLATIONS, get_if_exists=True, num_cpus=0).remote()
        options = PipelineOptions.from_settings(self.settings)
        self.front = ClusterFront(data, embedder, options, answerer, info, cancellations)

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - called by Serve after __init__
        from api.app import create_app

        return create_app(self.settings, pipeline=self.front, workers=self.replicas)


def build(settings: Settings, replicas: int, cpus: float):  # noqa: ANN201 - a ray.serve Application
    """The Serve application: one ingress and ``replicas`` answerers sharing ``cpus`` cores."""
    from ray import serve

    per_replica = max(cpus / replicas, 0.1)
    threads = max(1, int(per_replica))
    answerer = serve.deployment(
        Answerer,
        name="Answerer",
        num_replicas=replicas,
        max_ongoing_requests=1,  # one batch at a time, as the single-process worker
        ray_actor_options={"num_cpus": per_replica},
        health_check_period_s=2,
        graceful_shutdown_timeout_s=5,
    )
    ingress = serve.deployment(
        serve.ingress()(Ingress),
        name="Ingress",
        num_replicas=1,
        max_ongoing_requests=max(64, settings.queue_size * 4),
        ray_actor_options={"num_cpus": 0},
    )
    payload = _settings_payload(settings)
    return ingress.bind(answerer.bind(payload, threads), payload, replicas)


def serve_cluster(settings: Settings, replicas: int) -> None:
    """Start (or join, with ``RAY_ADDRESS``) a Ray cluster and serve the API on ``settings.host:port``
    until interrupted."""
    import signal

    import ray
    from ray import serve

    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # after ray.init, which sets its own
    cpus = float(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    serve.start(http_options={"host": settings.host, "port": settings.port})
    print(
        f"starting {replicas} answering replica(s) on {cpus:g} CPUs ({'joined ' + address if address else 'local Ray'})",
        flush=True,
    )
    serve.run(build(settings, replicas, cpus), name=APP_NAME, route_prefix="/")
    print(f"serving on http://{settings.host}:{settings.port}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:  # the application, and the local Ray cluster when this command started it
        print("shutting down", flush=True)
        serve.shutdown()
        ray.shutdown()
