"""POST /v1/ask: a verified, cited answer (or an honest abstention)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import PipelineDep
from api.responses import errors
from api.schemas import AskRequest, AskResponse

router = APIRouter(prefix="/v1", tags=["ask"])


@router.post("/ask", response_model=AskResponse, responses=errors(401, 422, 503))
async def ask(body: AskRequest, pipeline: PipelineDep) -> AskResponse:
    """Answer a question from the indexed articles.

    Every citation's `quote` equals `document.text[start:end]`; numbers and names in the answer occur in
    the cited quotes. When the articles do not contain the answer, `abstained` is true, `citations` is
    empty and `passages` lists the closest passages.
    """
    answer = await run_in_threadpool(pipeline.ask, body.question, body.top_k, body.history)
    return AskResponse.from_answer(answer)
