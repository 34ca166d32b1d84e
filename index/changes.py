"""What changed between the documents an index holds and the documents it should hold.

A document counts as changed when its title, text or front matter differ; only added and changed
documents are chunked and embedded again (`index.store.refresh`).

Example::

    >>> from index.documents import Document
    >>> old = {"a": Document("a", "A", "one"), "b": Document("b", "B", "two")}
    >>> diff(old, [Document("a", "A", "one"), Document("b", "B", "two!"), Document("c", "C", "three")]).summary()
    '1 added, 1 changed, 0 removed, 1 kept'
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from index.documents import Document


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]
    rows_from: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Set by `index.store.refresh`: for each passage row of the new index, the row of the index it
    refreshed that it was copied from, or -1 where it was embedded now (what `qa.retrieve.Retriever.updated`
    follows, so that the lexical index is updated instead of rebuilt)."""

    @functools.cached_property
    def embedded(self) -> frozenset[str]:
        """The documents whose passages must be embedded (again)."""
        return frozenset(self.added + self.changed)

    @property
    def none(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def summary(self) -> str:
        counts = (len(self.added), len(self.changed), len(self.removed), len(self.kept))
        return "{:,} added, {:,} changed, {:,} removed, {:,} kept".format(*counts)


def diff(indexed: Mapping[str, Document], docs: Sequence[Document]) -> Changes:
    """Compare the indexed documents (by id) with ``docs``, the documents the new index should hold."""
    wanted = {d.doc_id for d in docs}
    added = tuple(d.doc_id for d in docs if d.doc_id not in indexed)
    changed = tuple(d.doc_id for d in docs if d.doc_id in indexed and indexed[d.doc_id] != d)
    kept = tuple(d.doc_id for d in docs if d.doc_id in indexed and indexed[d.doc_id] == d)
    removed = tuple(doc_id for doc_id in indexed if doc_id not in wanted)
    return Changes(added, changed, removed, kept)
