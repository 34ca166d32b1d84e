"""The FastAPI application: routers, error mapping, observability, and a lifespan that loads models
off the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.deps import AppState, require_api_key
from api.gate import AnswerGate
from api.observability import Metrics, ObservabilityMiddleware
from api.routers import ask, chat_page, documents, health, openai_compat
from qa.config import Settings, get_settings
from qa.errors import QAError
from qa.pipeline import Pipeline

log = logging.getLogger("api")


def _load(state: AppState, settings: Settings) -> None:
    try:
        state.pipeline = Pipeline.from_settings(settings, progress=log.info)
        log.info("ready: %d documents", len(state.pipeline.documents))
    except QAError as exc:
        state.error = exc
        log.error("not ready: %s", exc)
    except Exception as exc:  # noqa: BLE001 - report, never crash-loop
        state.error = QAError(f"{type(exc).__name__} while loading")
        log.error("not ready: %s", type(exc).__name__)
    finally:
        state.loading = False
        state.ready_event.set()


def create_app(settings: Settings | None = None, *, pipeline: Pipeline | None = None, workers: int = 1) -> FastAPI:
    """Build the app. With ``pipeline`` (tests, or `api.cluster`'s replicas) it is ready at once;
    otherwise models load in a thread. ``workers``: batches answered at once (one a replica)."""
    settings = settings or get_settings()
    state = AppState(pipeline=pipeline)
    if pipeline is not None:
        state.ready_event.set()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gate = AnswerGate(
            settings.queue_size,
            settings.request_timeout_s,
            metrics.queue_depth.set,
            batch_window_s=settings.batch_window_ms / 1000,
            max_batch=settings.max_batch,
            on_batch=metrics.batch_size.observe,
            workers=workers,
        )
        if state.pipeline is None and not state.loading:
            state.loading = True
            threading.Thread(target=_load, args=(state, settings), name="qa-loader", daemon=True).start()
        yield

    app = FastAPI(
        title="News QA",
        version="0.1.0",
        summary="Cited question answering over news articles: every quote verified, or an honest abstention.",
        lifespan=lifespan,
    )
    app.state.qa = state
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.documents_lock = asyncio.Lock()  # serialises document writes
    errors.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    guarded = [Depends(require_api_key)]
    app.include_router(health.router)
    app.include_router(chat_page.router)
    app.include_router(ask.router, dependencies=guarded)
    app.include_router(documents.router, dependencies=guarded)
    app.include_router(openai_compat.router, dependencies=guarded)
    return app
