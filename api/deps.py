"""Application state and the dependencies routes use, as `Annotated` aliases."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from api.errors import APIError
from api.gate import AnswerGate
from api.observability import Metrics
from qa.config import Settings
from qa.errors import NotReady, QAError
from qa.pipeline import Pipeline


@dataclass
class AppState:
    """Holds the pipeline once loaded; ``error`` says why it is not, while ``loading`` is False."""

    pipeline: Pipeline | None = None
    error: QAError | None = None
    loading: bool = False
    ready_event: threading.Event = field(default_factory=threading.Event)


def get_state(request: Request) -> AppState:
    return request.app.state.qa


def get_pipeline(state: Annotated[AppState, Depends(get_state)]) -> Pipeline:
    if state.pipeline is not None:
        return state.pipeline
    if state.error is not None:
        raise NotReady(f"the server could not load its index or models: {state.error}")
    raise NotReady("the index and models are still loading; retry in a few seconds (see /readyz)")


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def require_api_key(request: Request, settings: Annotated[Settings, Depends(get_app_settings)]) -> None:
    """When QA_API_KEY is set, every /v1 route needs ``Authorization: Bearer <key>`` (401 otherwise)."""
    if not settings.api_key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
        raise APIError(
            401,
            "invalid_request_error",
            "missing or wrong API key: send Authorization: Bearer <key>",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def get_gate(request: Request) -> AnswerGate:
    return request.app.state.gate


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


StateDep = Annotated[AppState, Depends(get_state)]
GateDep = Annotated[AnswerGate, Depends(get_gate)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
