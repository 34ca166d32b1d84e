"""The one place where errors become HTTP responses.

Every error is ``{"error": {"message", "type", "param", "code"}}`` (plus ``details`` for validation):
OpenAI's envelope, so chat front ends and the official SDKs read our errors too. The native routes
(/v1/ask, /v1/documents) answer validation errors with 422; the OpenAI-compatible routes
(/v1/chat/completions, /v1/models) with 400 and type ``invalid_request_error``, as OpenAI does.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from qa.errors import (
    BadDocument,
    BadQuestion,
    BadRequest,
    Cancelled,
    Conflict,
    DeadlineExceeded,
    DocumentNotFound,
    GeneratorError,
    IndexError_,
    NotReady,
    Overloaded,
    QAError,
)

log = logging.getLogger("api")

_STATUS: list[tuple[type[QAError], int, str]] = [
    (BadQuestion, 422, "bad_question"),
    (BadRequest, 422, "bad_request"),
    (BadDocument, 422, "bad_document"),
    (DocumentNotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (NotReady, 503, "not_ready"),
    (IndexError_, 503, "index_unavailable"),
    (GeneratorError, 502, "generator_failed"),
    (Overloaded, 429, "rate_limit_exceeded"),
    (DeadlineExceeded, 504, "timeout"),
    (Cancelled, 499, "cancelled"),
]
OPENAI_PREFIXES = ("/v1/chat/", "/v1/models")


class APIError(Exception):
    """An HTTP error raised by the api layer itself (auth, body size), already carrying its status."""

    def __init__(self, status: int, kind: str, message: str, *, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.code, self.headers = status, kind, message, code, headers


def error_json(
    status: int,
    kind: str,
    message: str,
    details: list[dict] | None = None,
    headers: dict | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body: dict = {"message": message, "type": kind, "param": param, "code": code}
    if details:
        body["details"] = details
    return JSONResponse(status_code=status, content={"error": body}, headers=headers)


def status_for(exc: QAError) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"


def is_openai_route(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PREFIXES)


def _clean_validation(errors: list) -> list[dict]:
    # Keep where and what, drop the echoed input (it may be huge or hold secrets).
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": _message(e), "type": str(e.get("type", ""))} for e in errors
    ]


def _message(error: dict) -> str:
    if error.get("type") == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern")
        if pattern == r"\S":
            return "must not be empty or blank; send a non-blank question"
        if pattern and "u0000" in pattern:
            return "must not be blank or contain NUL bytes"
    return str(error.get("msg", ""))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            match, _ = route.matches({**request.scope, "method": method})
            if match == Match.FULL:
                methods.add(method)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(QAError)
    async def qa_error(request: Request, exc: QAError) -> JSONResponse:
        status, kind = status_for(exc)
        if is_openai_route(request) and status == 422:
            status, kind = 400, "invalid_request_error"
        headers = {"Retry-After": "5"} if status == 503 else None
        return error_json(status, kind, str(exc), headers=headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_json(exc.status, exc.kind, exc.message, headers=exc.headers, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _clean_validation(list(exc.errors()))
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "body"
        if is_openai_route(request):
            return error_json(400, "invalid_request_error", f"{where}: {first['msg']}", details, param=where)
        return error_json(422, "invalid_request", f"{where}: {first['msg']}", details, param=where)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {"Allow": ", ".join(_allowed_methods(request))}
        return error_json(exc.status_code, kind, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_json(500, "internal_error", "internal error; the server log has the details")
