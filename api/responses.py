"""OpenAPI declarations of the error responses, so /docs lists them truthfully."""

from __future__ import annotations

from api.schemas import ErrorResponse

_DESCRIPTIONS = {
    400: "Malformed request body (not JSON or not UTF-8); on the OpenAI-compatible routes, any invalid request",
    401: "Missing or wrong API key",
    404: "No such document",
    409: "The change would leave the corpus empty",
    413: "Request body too large",
    422: "Invalid request (blank or too-long question, wrong types, unknown fields, top_k out of range)",
    429: "The answer queue is full; retry after Retry-After seconds",
    504: "The answer could not be produced within the request deadline",
    503: "Index or models not loaded (yet)",
}


def errors(*codes: int) -> dict[int | str, dict]:
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}
