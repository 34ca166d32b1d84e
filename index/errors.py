"""The root of the project's error tree and the errors the index layer raises.

``qa.errors`` re-exports every class here beside the errors of the layers above, so callers import
errors from there; the index layer imports them from here and so never reaches up into ``qa``.
"""

from __future__ import annotations


class QAError(Exception):
    """Base class of every error this project raises on purpose."""


class BadDocument(QAError):
    """Raised when a source document cannot be read or has an unusable id."""


class IndexError_(QAError):
    """Base class of the errors about the on-disk index."""


class IndexMissing(IndexError_):
    """Raised when no index has been built in the index directory yet."""


class IndexMismatch(IndexError_):
    """Raised when an index was built with another embedding model, dimension or format version."""


class IndexCorrupt(IndexError_):
    """Raised when index files are truncated, fail their checksums or disagree with the manifest."""


class GeneratorError(QAError):
    """Raised when the configured generator cannot be loaded or fails to produce text."""


class ModelNotFound(GeneratorError):
    """Raised when a packaged or configured model file or directory cannot be found."""
