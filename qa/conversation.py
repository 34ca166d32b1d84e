"""History-aware retrieval queries for follow-up questions, by deterministic rewriting.

"How many GP practices?" then "And how many trusts?" must retrieve with the earlier turn's context.
The 135M model is not trusted with this; a follow-up is recognised by its form and the content words
of the most recent user turns are appended to the retrieval query (the question itself, used for the
answer type and the short answer, is unchanged).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.text import QUESTION_WORDS, STOPWORDS, words

_FOLLOW_UP_START = re.compile(
    r"^\s*(?:and|but|also|so|what about|how about|and what about|then|what else)\b", re.IGNORECASE
)
_PRONOUN = re.compile(
    r"\b(?:he|she|it|they|him|her|them|his|hers|its|their|theirs|this|that|these|those|there)\b", re.IGNORECASE
)
_MAX_CONTEXT_WORDS = 12


def is_follow_up(question: str) -> bool:
    """True when a question leans on an earlier turn: it opens like a continuation, refers back with
    a pronoun, or has at most one content word of its own.

    Examples: "And how many trusts?" -> True; "What did he say?" -> True;
    "How many GP practices did CSC serve?" -> False
    """
    if _FOLLOW_UP_START.search(question) or _PRONOUN.search(question):
        return True
    content = [w for w in words(question) if w not in STOPWORDS and w not in QUESTION_WORDS]
    return len(content) <= 1


def contextualize(question: str, history: Sequence[str]) -> str:
    """The retrieval query: the question, plus the content words of the latest user turns when it is
    a follow-up (most recent turn first, at most 12 words, no repeats).

    Example: contextualize("And how many trusts?", ["How many GP practices was CSC contracted for?"])
      -> "And how many trusts? gp practices csc contracted"
    """
    if not history or not is_follow_up(question):
        return question
    own = set(words(question))
    extra: list[str] = []
    for turn in reversed(history[-3:]):
        for w in words(turn):
            if w in STOPWORDS or w in QUESTION_WORDS or w in own or w in extra:
                continue
            extra.append(w)
        if len(extra) >= _MAX_CONTEXT_WORDS:
            break
    return f"{question} {' '.join(extra[:_MAX_CONTEXT_WORDS])}".strip() if extra else question
