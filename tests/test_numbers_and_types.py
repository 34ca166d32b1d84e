from __future__ import annotations

import pytest

from qa.lang.answer_types import AnswerType, expected_type, find_spans
from qa.lang.numbers import find_quantities, same_quantity


@pytest.mark.parametrize(
    ("text", "value", "currency"),
    [
        ("£1bn", 1e9, "GBP"),
        ("£1 billion", 1e9, "GBP"),
        ("1 billion pounds", 1e9, "GBP"),
        ("£3.1bn", 3.1e9, "GBP"),
        ("£600m", 6e8, "GBP"),
        ("4,400", 4400, None),
        ("4400", 4400, None),
        ("$5m", 5e6, "USD"),
        ("€2 million", 2e6, "EUR"),
    ],
)
def test_quantities_normalise(text, value, currency):
    (q,) = find_quantities(text)
    assert q.value == pytest.approx(value)
    assert q.currency == currency
    assert text[q.start : q.end] == q.text or q.text == text.lower()


@pytest.mark.parametrize(
    ("claim", "evidence", "same"),
    [
        ("£1bn", "£1 billion", True),
        ("1 billion pounds", "£1bn", True),
        ("1 billion", "£1bn", True),  # the claim may omit the currency
        ("£1.1 billion", "£1 billion", False),
        ("$1bn", "£1bn", False),
        ("£1bn", "1 billion", False),  # but may not add one
        ("4,400", "4400", True),
        ("20%", "20 per cent", True),
    ],
)
def test_same_quantity(claim, evidence, same):
    (c,) = find_quantities(claim)
    (e,) = find_quantities(evidence)
    assert same_quantity(c, e) is same


def test_quantity_offsets_index_the_original_text():
    text = "It’s “big”… £1bn and 4,400 GP practices."
    for q in find_quantities(text):
        assert text[q.start : q.end].lower() == q.text


@pytest.mark.parametrize(
    ("question", "atype"),
    [
        ("How much is CSC saving?", AnswerType.MONEY),
        ("How many GP practices?", AnswerType.NUMBER),
        ("When was the deadline?", AnswerType.DATE),
        ("What year did it start?", AnswerType.DATE),
        ("Who is the health secretary?", AnswerType.ENTITY),
        ("Where is it?", AnswerType.PLACE),
        ("Why did the deal stall?", None),
    ],
)
def test_expected_type(question, atype):
    assert expected_type(question) is atype


@pytest.mark.parametrize(
    ("text", "atype", "spans"),
    [
        ("saving £1bn by 2014 for 171 trusts", AnswerType.MONEY, ["£1bn"]),
        ("saving £1bn by 2014 for 171 trusts", AnswerType.NUMBER, ["171"]),
        ("extended until 1 June, said in March 2011", AnswerType.DATE, ["1 June", "March 2011"]),
        ("health secretary Andrew Lansley said", AnswerType.PERSON, ["Andrew Lansley"]),
        ("asked by Joe McDonald, NHS lead", AnswerType.PERSON, ["Joe McDonald"]),
        ("the National Audit Office said", AnswerType.PERSON, []),
    ],
)
def test_find_spans(text, atype, spans):
    assert [text[s:e] for s, e in find_spans(text, atype)] == spans
