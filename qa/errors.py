"""The one error tree of the project (its root and the index layer's errors live in ``index.errors``).

Library code raises these; only ``api/`` maps them to HTTP status codes (in one handler), and the
CLI prints their message. Every message carries the offending value and, where there is one, the fix.
"""

from __future__ import annotations

from index.errors import (
    BadDocument,
    GeneratorError,
    IndexCorrupt,
    IndexError_,
    IndexMismatch,
    IndexMissing,
    ModelNotFound,
    QAError,
)

__all__ = [
    "BadDocument",
    "BadQuestion",
    "BadRequest",
    "Cancelled",
    "Conflict",
    "DeadlineExceeded",
    "DocumentNotFound",
    "GeneratorError",
    "IndexCorrupt",
    "IndexError_",
    "IndexMismatch",
    "IndexMissing",
    "ModelNotFound",
    "NotReady",
    "Overloaded",
    "QAError",
]


class BadQuestion(QAError):
    """Raised when a question is empty, too long or otherwise unusable."""


class BadRequest(QAError):
    """Raised when a request parameter other than the question is out of range (e.g. ``top_k``)."""


class DocumentNotFound(QAError):
    """Raised when a document id is not in the loaded corpus."""


class Conflict(QAError):
    """Raised when a change would leave the corpus unusable (e.g. deleting its last document)."""


class NotReady(QAError):
    """Raised when a question arrives before the index and models have finished loading."""


class Overloaded(QAError):
    """Raised when the answer queue is full; the client should retry after a pause."""


class DeadlineExceeded(QAError):
    """Raised when a request could not be answered within the configured deadline."""


class Cancelled(QAError):
    """Raised inside the pipeline when its caller gave up (deadline passed or client gone)."""
