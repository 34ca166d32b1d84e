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
    asked = [question for question, _ in reader.calls]
    assert asked[-2].startswith("And how many swimming pools?") and "libraries" in asked[-2]  # read in context
    assert asked[-1] == "And how many swimming pools?"  # and as asked
    alone = pipeline.ask("And how many swimming pools?")
    assert reader.calls[-1][0] == "And how many swimming pools?"  # no history, nothing added
    assert alone.short_answer == "3 swimming pools"


def test_a_follow_up_keeps_the_reading_of_higher_margin_per_passage(tiny_index, embedder):
    """Read with the earlier turn's words, the span scores below its no-answer score; read as asked,
    above it: the passage keeps the bare reading and the follow-up is answered from it. A question
    that is no follow-up is read once."""
    from qa.pipeline import Pipeline
    from qa.reader.reader import FakeReader, Reading

    class ContextShy(FakeReader):
        def read(self, question, passages):  # noqa: ANN001, ANN202
            out = super().read(question, passages)
            if "libraries" in question.lower():  # the earlier turn's words put the reader off
                out = [Reading(r.passage, r.start, r.end, r.span, r.score - 20, r.null) for r in out]
            return out

    reader = ContextShy({"swimming pools": "3 swimming pools"})
    pipeline = Pipeline(tiny_index, embedder, None, reader=reader)
    answer = pipeline.ask("And how many swimming pools?", history=["How many libraries does the council run?"])
    assert answer.short_answer == "3 swimming pools"
    assert answer.evidence["margin"] == 10.0  # the bare reading's
    reader.calls.clear()
    pipeline.ask("How many swimming pools are there in Northtown?")
    assert len(reader.calls) == 1
