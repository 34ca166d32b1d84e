"""Turn a window's start/end logits into the best answer span (the post-processing of transformers' run_qa).

Example::

    >>> import numpy as np
    >>> offsets = [None, None, (0, 3), (4, 9), (10, 14), None]   # [CLS] q [SEP] "The quick fox" [SEP]
    >>> starts = np.array([0.0, 0, 0.1, 3.0, 0.2, 0])
    >>> ends = np.array([0.0, 0, 0.1, 0.5, 2.5, 0])
    >>> best_span(starts, ends, offsets)
    (4, 14, 5.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_ANSWER_TOKENS = 30
N_BEST = 20


def best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[tuple[int, int] | None],
    *,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
    n_best: int = N_BEST,
) -> tuple[int, int, float] | None:
    """(char_start, char_end, start+end logit) of the best context span, or None if the window has none.

    Only tokens with an offset (the context's own tokens) may start or end a span; the end may not come
    before the start or more than ``max_answer_tokens`` after it.
    """
    usable = np.array([o is not None for o in offsets], dtype=bool)
    if not usable.any():
        return None
    s = np.where(usable, start_logits, -np.inf)
    e = np.where(usable, end_logits, -np.inf)
    k = min(n_best, int(usable.sum()))
    starts = np.argsort(s)[::-1][:k]
    ends = np.argsort(e)[::-1][:k]
    best: tuple[int, int, float] | None = None
    for i in starts:
        for j in ends:
            if j < i or j - i + 1 > max_answer_tokens:
                continue
            score = float(s[i] + e[j])
            if best is None or score > best[2]:
                best = (offsets[i][0], offsets[j][1], score)
    return best
