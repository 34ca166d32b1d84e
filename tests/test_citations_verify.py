from __future__ import annotations

import pytest

from index.documents import parse_document
from qa.citations import citation_is_valid, cite_in_order, make_citation, parse_markers, renumber, strip_markers
from qa.question import parse_question
from qa.verify import early_reject, name_claims, states_value, unsupported_names, unsupported_quantities, verify_answer

QUOTE = "Health secretary Andrew Lansley has confirmed that around £1 billion savings will be delivered to the NHS from CSC’s contract."


@pytest.mark.parametrize(
    ("text", "markers"),
    [("A [2]. B [1, 2]. C [3][2]", [2, 1, 3]), ("none", []), ("[1;3] x [3]", [1, 3]), ("[12] [a] [ 4 ]", [12, 4])],
)
def test_parse_markers(text, markers):
    assert parse_markers(text) == markers


def test_renumber_in_order_of_first_use_and_drop_unknown():
    assert renumber("A [3]. B [1, 3] C [9].", {3: 1, 1: 2}) == "A [1]. B [2][1] C."
    assert strip_markers("£1bn [1].") == "£1bn."


def test_cite_in_order_builds_exact_quotes():
    doc = parse_document("d", "First one. Second one. Third one.")
    sources = [("d", 11, 22), ("d", 0, 10), ("d", 23, 33)]
    mapping, cites = cite_in_order(sources, [2, 1, 7], {"d": doc})
    assert mapping == {2: 1, 1: 2}
    assert [c.quote for c in cites] == ["First one.", "Second one."]
    assert all(citation_is_valid(c, {"d": doc}) for c in cites)


def test_citation_validity_detects_tampering():
    doc = parse_document("d", "The NHS saves £1bn.")
    good = make_citation(1, doc, 4, 7)
    assert citation_is_valid(good, {"d": doc})
    from dataclasses import replace

    assert not citation_is_valid(replace(good, quote="CSC"), {"d": doc})
    assert not citation_is_valid(replace(good, doc_id="other"), {"d": doc})
    with pytest.raises(ValueError):
        make_citation(1, doc, 5, 500)


def test_claims_are_extracted():
    assert name_claims("The NHS saves £1bn, Lansley said [1].") == ["NHS", "Lansley"]
    assert unsupported_names("CSA saves", ["CSC saves"]) == ["CSA"]
    assert unsupported_quantities("£1.1 billion", [QUOTE]) == ["£1.1 billion"]
    assert unsupported_quantities("1 billion pounds and £1bn", [QUOTE]) == []


@pytest.mark.parametrize(
    ("answer", "ok", "problem"),
    [
        ("The NHS is saving around £1 billion [1].", True, None),
        ("The NHS saves £1bn [1].", True, None),
        ("CSC is saving £1.1bn [1].", False, "unsupported quantity"),
        ("CSA saves £1 billion [1].", False, "unsupported name CSA"),
        ("The NHS is saving money [1].", False, "states no money"),
        ("The NHS is saving around £1 billion", False, "unfinished sentence"),
        ("CSC is saving [1].", False, "adds nothing"),
        ("The NHS saves £1bn thanks to unicorn magic and dragons [1].", False, "words it adds"),
    ],
)
def test_verify_answer(answer, ok, problem):
    verdict = verify_answer(answer, [QUOTE], question=parse_question("How much is CSC saving?"))
    assert verdict.ok is ok
    if problem:
        assert any(problem in p for p in verdict.problems), verdict.problems


def test_verify_requires_a_citation():
    assert "no citation" in verify_answer("The NHS saves £1bn.", [], question=parse_question("q")).problems


@pytest.mark.parametrize(
    ("partial", "stop"),
    [
        ("CSA’s ", True),
        ("The NHS saves £1 ", False),  # "£1" may still become "£1 billion"
        ("The NHS saves £1 billion ", False),
        ("CSC’s £1.1 billion contract ", True),
        ("Lansley", False),
        ("", False),
    ],
)
def test_early_reject(partial, stop):
    assert early_reject(partial, [QUOTE]) is stop


@pytest.mark.parametrize(
    ("text", "value", "same"),
    [
        ("The NHS saves £1 billion.", "£1bn", True),
        ("CSC installs at 171 trusts.", "4,400", False),
        ("The deadline was extended to 1 June.", "1 June", True),
        ("Andy Burnham announced it.", "Andy Burnham", True),
        ("The Labour government announced it.", "Andy Burnham", False),
    ],
)
def test_states_value(text, value, same):
    assert states_value(text, value) is same


def test_clean_generation():
    from qa.generate import clean_generation

    assert clean_generation("Answer: It is 4,400.\nQuestion: more") == "It is 4,400."
    assert clean_generation("  The answer is:   £1bn  ") == "£1bn"
    assert clean_generation("") == ""
