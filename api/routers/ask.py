"""POST /v1/ask: a verified, cited answer (or an honest abstention)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import GateDep, MetricsDep, PipelineDep
from api.responses import errors
from api.schemas import AskRequest, AskResponse

router = APIRouter(prefix="/v1", tags=["ask"])


@router.post("/ask", response_model=AskResponse, responses=errors(400, 401, 413, 422, 429, 503, 504))
async def ask(
    body: AskRequest, pipeline: PipelineDep, gate: GateDep, metrics: MetricsDep, request: Request
) -> AskResponse:
    """Answer a question from the indexed articles.

    Every citation's `quote` equals `document.text[start:end]`; numbers and names in the answer occur in
    the cited quotes. When the articles do not contain the answer, `abstained` is true, `citations` is
    empty and `passages` lists the closest passages.
    """
    pipeline.check_question(body.question, body.top_k)
    ticket = gate.admit()
    answer = await ticket.run(
        pipeline, body.question, body.top_k, body.history, None, is_disconnected=request.is_disconnected
    )
    metrics.observe_answer(answer)
    return AskResponse.from_answer(answer, pipeline.documents)
