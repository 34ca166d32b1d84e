"""The one error tree of the project.

Library code raises these; only ``api/`` maps them to HTTP status codes (in one handler), and the
CLI prints their message. Every message carries the offending value and, where there is one, the fix.
"""

from __future__ import annotations


class QAError(Exception):
    """Base class of every error this project raises on purpose."""


class BadQuestion(QAError):
    """Raised when a question is empty, too long or otherwise unusable."""


class BadRequest(QAError):
    """Raised when a request parameter other than the question is out of range (e.g. ``top_k``)."""


class DocumentNotFound(QAError):
    """Raised when a document id is not in the loaded corpus."""


class BadDocument(QAError):
    """Raised when a source document cannot be read or has an unusable id."""


class Conflict(QAError):
    """Raised when a change would leave the corpus unusable (e.g. deleting its last document)."""


class IndexError_(QAError):
    """Base class of the errors about the on-disk index."""


class IndexMissing(IndexError_):
    """Raised when no index has been built in the index directory yet."""


class IndexMismatch(IndexError_):
    """Raised when an index was built with another embedding model, dimension or format version."""


class IndexCorrupt(IndexError_):
    """Raised when index files are truncated, fail their checksums or disagree with the manifest."""


class NotReady(QAError):
    """Raised when a question arrives before the index and models have finished loading."""


class Overloaded(QAError):
    """Raised when the answer queue is full; the client should retry after a pause."""


class DeadlineExceeded(QAError):
    """Raised when a request could not be answered within the configured deadline."""


class Cancelled(QAError):
    """Raised inside the pipeline when its caller gave up (deadline passed or client gone)."""


class GeneratorError(QAError):
    """Raised when the configured generator cannot be loaded or fails to produce text."""


class ModelNotFound(GeneratorError):
    """Raised when a packaged or configured model file or directory cannot be found."""
