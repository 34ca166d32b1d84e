"""Application state and the dependencies routes use, as `Annotated` aliases."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

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


StateDep = Annotated[AppState, Depends(get_state)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
