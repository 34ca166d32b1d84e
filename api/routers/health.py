"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import MetricsDep, StateDep
from api.responses import errors
from api.schemas import Health, Ready
from qa.errors import NotReady

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive (answers even while models load or generation is busy)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=errors(503))
def readyz(state: StateDep) -> Ready:
    """503 until the index and models are loaded, with the reason when loading failed."""
    pipeline = state.pipeline
    if pipeline is None:
        if state.error is not None:
            raise NotReady(f"not ready: {state.error}")
        raise NotReady("not ready: the index and models are still loading")
    return Ready(
        status="ready",
        documents=len(pipeline.documents),
        passages=len(pipeline.data.passages),
        embedding_model=pipeline.embedder.model_id,
        generator=pipeline.generator.model_id if pipeline.generator else "none (extractive answers)",
        index_version=pipeline.data.version,
    )


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format: requests by route and status, queue depth, stage latencies, answers by mode."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
