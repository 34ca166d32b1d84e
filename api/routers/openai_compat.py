"""OpenAI-compatible chat completions (streamed or not) over the same verified pipeline as /v1/ask.

Streaming design: verify first, then stream. A generated answer may be replaced by an extractive one
after verification, and OpenAI clients only append deltas, so tokens streamed live from the model
could never be taken back. The stream therefore opens at once (a role chunk), computes the verified
answer, then streams it in word-sized chunks and ends with a chunk carrying ``citations``,
``abstained`` and ``finish_reason``. Cost: the first content token arrives when the whole answer is
ready (p50 ~0.9 s with the packaged model in `make bench`; the role chunk within 5 ms).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import GateDep, MetricsDep, PipelineDep, SettingsDep
from api.errors import status_for
from api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    Choice,
    ModelCard,
    ModelList,
    Usage,
)
from api.responses import errors
from api.schemas import citations_out, passages_out
from qa.errors import BadRequest, Cancelled, QAError

log = logging.getLogger("api")
router = APIRouter(prefix="/v1", tags=["openai-compatible"])
_STARTED = int(time.time())
_PIECE_RE = re.compile(r"\S+\s*|\s+")
# One Server-Sent Event: its `data` is the JSON of a chat.completion.chunk, or of {"error": ...}
# after the stream has begun, or the final literal "[DONE]".
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": 'JSON chat.completion.chunk, JSON {"error": {...}}, or "[DONE]"'}
    },
}


def split_conversation(messages: Sequence[ChatMessage]) -> tuple[str, list[str]]:
    """(question, history): the last message must be the user's; earlier user turns are the history.

    System and assistant messages are not used for retrieval or answering (a system prompt cannot
    change what the articles say, and earlier answers are not evidence).
    Example: [user "How many GP practices?", assistant "...", user "And trusts?"] -> ("And trusts?", ["How many GP practices?"])
    """
    if messages[-1].role != "user":
        raise BadRequest(f"the last message must have role 'user', got {messages[-1].role!r}")
    question = messages[-1].text().strip()
    history = [m.text().strip() for m in messages[:-1] if m.role == "user" and m.text().strip()]
    return question, history


@router.get("/models", response_model=ModelList, responses=errors(401))
def list_models(settings: SettingsDep) -> ModelList:
    """The served model id, in OpenAI's shape (chat front ends list it in their model picker)."""
    return ModelList(data=[ModelCard(id=settings.served_model_name, created=_STARTED)])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            "description": "A chat.completion, or with stream=true Server-Sent Events of chat.completion.chunk",
        },
        **errors(400, 401, 413, 429, 503, 504),
    },
)
async def chat_completions(  # noqa: ANN201
    body: ChatRequest,
    pipeline: PipelineDep,
    settings: SettingsDep,
    gate: GateDep,
    metrics: MetricsDep,
    request: Request,
):
    """Answer the last user message with the conversation's earlier user turns as context.

    `choices[0].message.content` holds the verified answer with `[n]` markers; the extra top-level
    `citations` has the same objects as /v1/ask, and `abstained` says when the articles do not say.
    """
    question, history = split_conversation(body.messages)
    pipeline.check_question(question, None)  # a bad question is a 400 before any streaming starts
    budget = body.max_completion_tokens or body.max_tokens
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    model = settings.served_model_name
    gate.check_capacity()  # a full queue is a 429 before any streaming starts
    if not body.stream:
        ticket = gate.admit()
        answer = await ticket.run(pipeline, question, None, history, budget, is_disconnected=request.is_disconnected)
        metrics.observe_answer(answer)
        prompt_tokens = pipeline.count_tokens(" ".join([*history, question]))
        completion_tokens = pipeline.count_tokens(answer.text)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=model,
            choices=[Choice(message=AssistantMessage(content=answer.text))],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
            citations=citations_out(answer),
            abstained=answer.abstained,
            answer_mode=answer.mode.value,
            passages=passages_out(answer, pipeline.documents),
            index_version=answer.index_version,
        )

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:  # noqa: ANN003
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        try:
            # The ticket is taken here, not before the response: a client that never reads the
            # stream then holds no place in the queue.
            ticket = gate.admit(checked=True)
            answer = await ticket.run(
                pipeline, question, None, history, budget, is_disconnected=request.is_disconnected
            )
            metrics.observe_answer(answer)
        except Cancelled:
            return  # the client went away
        except QAError as exc:
            status, kind = status_for(exc)
            yield f"data: {json.dumps({'error': {'message': str(exc), 'type': kind, 'param': None, 'code': str(status)}})}\n\n"
            yield "data: [DONE]\n\n"
            return
        except Exception as exc:  # noqa: BLE001 - the stream has begun: report in-band, never cut silently
            log.error("stream failed: %s", type(exc).__name__)
            yield 'data: {"error": {"message": "internal error", "type": "internal_error", "param": null, "code": "500"}}\n\n'
            yield "data: [DONE]\n\n"
            return
        for piece in _PIECE_RE.findall(answer.text):
            if await request.is_disconnected():
                return
            yield chunk({"content": piece})
        yield chunk(
            {},
            "stop",
            citations=[c.model_dump() for c in citations_out(answer)],
            abstained=answer.abstained,
            answer_mode=answer.mode.value,
            passages=[p.model_dump() for p in passages_out(answer, pipeline.documents)],
            index_version=answer.index_version,
        )
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
