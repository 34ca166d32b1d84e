"""Request ids, structured JSON logs, Prometheus metrics and the request-body size limit.

Pure ASGI middleware, so streamed responses are measured to their end and an oversized body is
refused with 413 before anything parses (or tokenises) it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, process_collector

from qa.memory import peak_rss_bytes

log = logging.getLogger("api.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=self.registry)  # process_resident_memory_bytes etc.
        self.requests = Counter(
            "qa_requests",
            "HTTP requests by route template and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "qa_request_seconds", "HTTP request duration", ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge(
            "qa_queue_depth", "Answer requests waiting for or holding the model worker", registry=self.registry
        )
        self.batch_size = Histogram(
            "qa_batch_size",
            "Answer requests the model worker ran together",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "qa_stage_seconds", "Pipeline stage latency", ["stage"], buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.answers = Counter("qa_answers", "Answers by mode", ["mode"], registry=self.registry)
        Gauge(
            "qa_process_peak_resident_memory_bytes",
            "The most resident memory the server has held since it started (its RSS high-water mark)",
            registry=self.registry,
        ).set_function(peak_rss_bytes)
        for mode in ("generated", "extractive", "abstained"):
            self.answers.labels(mode)

    def observe_answer(self, answer) -> None:  # noqa: ANN001
        self.answers.labels(answer.mode.value).inc()
        for stage, ms in answer.timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed as ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = name != "uvicorn.access"  # we log access ourselves


async def _send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]]) -> None:  # noqa: ANN001
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class ObservabilityMiddleware:
    """Request id (X-Request-ID in and out), access log line, request metrics, body size limit."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int) -> None:  # noqa: ANN001
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        start = time.perf_counter()
        status = [500]

        async def send_with_id(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        too_big = {
            "message": f"request body larger than {self.max_body_bytes} bytes",
            "type": "payload_too_large",
            "param": None,
            "code": None,
        }
        length = headers.get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                status[0] = 413
                await _send_json(send, 413, {"error": too_big}, [id_header])
                return
            if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
                # A body without Content-Length (chunked): read it here, up to the limit, then replay it.
                messages, size = [], 0
                while True:
                    message = await receive()
                    messages.append(message)
                    if message["type"] != "http.request":
                        break
                    size += len(message.get("body", b""))
                    if size > self.max_body_bytes:
                        status[0] = 413
                        await _send_json(send, 413, {"error": too_big}, [id_header])
                        return
                    if not message.get("more_body", False):
                        break
                replay = iter(messages)

                async def replayed():  # noqa: ANN202
                    return next(replay, None) or await receive()

                await self.app(scope, replayed, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(template, scope["method"], str(status[0])).inc()
            self.metrics.request_seconds.labels(template).observe(seconds)
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": template,
                        "status": status[0],
                        "ms": round(seconds * 1000, 1),
                    }
                },
            )
