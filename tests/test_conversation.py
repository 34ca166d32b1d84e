from __future__ import annotations

import pytest

from qa.question import contextualize, is_follow_up


@pytest.mark.parametrize(
    ("question", "follow"),
    [
        ("And how many trusts?", True),
        ("What did he tell investors?", True),
        ("What about 2012?", True),
        ("How many GP practices did CSC serve?", False),
        ("Who is CSC's president of healthcare?", False),
    ],
)
def test_is_follow_up(question, follow):
    assert is_follow_up(question) is follow


def test_contextualize_appends_latest_turn_words():
    q = contextualize("And how many trusts?", ["Who is it?", "How many GP practices was CSC contracted for?"])
    assert q.startswith("And how many trusts? gp practices csc contracted")
    assert contextualize("How many GP practices?", ["anything"]) == "How many GP practices?"
    assert contextualize("And how many trusts?", []) == "And how many trusts?"


def test_follow_up_is_read_in_its_context(tiny_index, embedder):
    from qa.pipeline import Pipeline
    from tests.conftest import tiny_reader

    reader = tiny_reader()
    pipeline = Pipeline(tiny_index, embedder, None, reader=reader)
    answer = pipeline.ask("And how many swimming pools?", history=["How many libraries does the council run?"])
    assert answer.short_answer == "3 swimming pools"
    assert answer.text.startswith("3 swimming pools: “") and "[1]" in answer.text
    asked = reader.calls[-1][0]
    assert asked.startswith("And how many swimming pools?") and "libraries" in asked  # the reader sees the context
    alone = pipeline.ask("And how many swimming pools?")
    assert reader.calls[-1][0] == "And how many swimming pools?"  # no history, nothing added
    assert alone.short_answer == "3 swimming pools"
