"""OpenAPI declarations of the error responses, so /docs lists them truthfully."""

from __future__ import annotations

from api.schemas import ErrorResponse

_DESCRIPTIONS = {
    400: "Invalid request (OpenAI-compatible routes)",
    401: "Missing or wrong API key",
    404: "No such document",
    413: "Request body too large",
    422: "Invalid request (blank or too-long question, wrong types, unknown fields, top_k out of range)",
    429: "Too many requests queued",
    503: "Index or models not loaded (yet)",
}


def errors(*codes: int) -> dict[int | str, dict]:
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}
