from __future__ import annotations

import pytest

from qa.answer_types import AnswerType
from qa.conversation import contextualize, is_follow_up
from qa.extractive import asks_for_several, short_answer_span

CONTRACT = "CSC was contracted to install a care records system at 171 NHS trusts and 4,400 GP practices by 2013-14."


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


@pytest.mark.parametrize(
    ("text", "atype", "question", "expected"),
    [
        (CONTRACT, AnswerType.NUMBER, "How many GP practices was CSC contracted to serve?", "4,400"),
        (CONTRACT, AnswerType.NUMBER, "How many NHS trusts were covered?", "171"),
        (
            "CSC’s president of healthcare Guy Hains told investors",
            AnswerType.ENTITY,
            "Who is CSC's president?",
            "Guy Hains",
        ),
        (
            "Health secretary Andrew Lansley has confirmed savings from CSC’s contract",
            AnswerType.ENTITY,
            "Who confirmed the savings?",
            "Andrew Lansley",
        ),
        (
            "a framework contract tendered by NHS Shared Business Services to procure systems",
            AnswerType.ENTITY,
            "Which body tendered the framework contract?",
            "NHS Shared Business Services",
        ),
        (
            "talks since Pennine Care NHS Foundation Trust pulled out, the DH said",
            AnswerType.ENTITY,
            "Which trust pulled out?",
            "Pennine Care NHS Foundation Trust",
        ),
        (
            "The government announced that a further £700m would be cut, with £200m of this from CSC’s deal.",
            AnswerType.MONEY,
            "How much more did the government announce would be cut?",
            "£700m",
        ),
        (
            "Andy Burnham announced that £600m would be cut",
            AnswerType.ENTITY,
            "Who announced the £600m cut?",
            "Andy Burnham",
        ),
    ],
)
def test_short_answer_span(text, atype, question, expected):
    span = short_answer_span(text, atype, question)
    assert span and text[span[0] : span[1]] == expected


def test_short_answer_span_skips_what_the_question_states():
    assert short_answer_span("It would cut £600m.", AnswerType.MONEY, "Who announced the £600m cut?") is None
    assert short_answer_span("No typed span here.", AnswerType.DATE, "When?") is None


@pytest.mark.parametrize(
    ("question", "several"),
    [
        ("What two savings figures did Lansley give?", True),
        ("How many trusts and how many GP practices?", True),
        ("And how much did the present government cut?", False),
        ("How much is CSC saving?", False),
    ],
)
def test_asks_for_several(question, several):
    assert asks_for_several(question) is several


def test_follow_up_uses_history_in_the_pipeline(tiny_index, embedder):
    from qa.pipeline import Pipeline

    pipeline = Pipeline(tiny_index, embedder, None)
    answer = pipeline.ask("And how many swimming pools?", history=["How many libraries does the council run?"])
    assert answer.text.startswith("3: ")


def test_several_values_are_listed(tiny_index, embedder):
    from qa.pipeline import Pipeline

    answer = Pipeline(tiny_index, embedder, None).ask(
        "How many libraries and how many swimming pools does the council run?"
    )
    assert answer.short_answer in ("12; 3", "3; 12")


def test_untyped_span_is_the_new_words_near_the_question():
    from qa.extractive import untyped_span

    sentence = "The terms were set out in a non-binding letter of intent."
    assert untyped_span(sentence, "What set out the terms?") == "non-binding letter"
    assert untyped_span("Yes.", "Is it?") == "Yes"
