"""End-to-end answers with the real packaged models on the seed articles."""

from __future__ import annotations

import pytest

from qa.citations import citation_is_valid, parse_markers
from qa.numbers import find_quantities, same_quantity
from qa.text import normalize
from qa.types import AnswerMode


def _states(answer_text: str, expected: str) -> bool:
    """True when the answer states ``expected``: same quantity by value, else a normalised substring."""
    wanted = find_quantities(expected)
    if wanted:
        got = find_quantities(answer_text)
        return all(any(same_quantity(w, g) for g in got) for w in wanted)
    return normalize(expected) in normalize(answer_text)


def _assert_verified(answer, docs):
    assert answer.citations, answer.text
    assert all(citation_is_valid(c, docs) for c in answer.citations)
    assert sorted(parse_markers(answer.text)) == [c.id for c in answer.citations]


def test_mission_question(real_pipeline):
    answer = real_pipeline.ask("How much is CSC saving?")
    assert not answer.abstained
    assert _states(answer.text, "£1bn"), answer.text
    _assert_verified(answer, real_pipeline.documents)
    assert {c.doc_id for c in answer.citations} == set(real_pipeline.documents)  # both articles
    assert all("NHS" in c.quote for c in answer.citations)  # the NHS saves, per the quotes


FACTUAL = [
    ("How many GP practices was CSC contracted to install a care records system at?", "4,400"),
    ("How many NHS trusts were covered by CSC's contract?", "171"),
    ("How much was CSC's contract worth?", "£3.1bn"),
    ("Who is CSC's president of healthcare?", "Guy Hains"),
    ("Until when was the deadline extended?", "1 June"),
    ("Who announced that £600m would be cut from the programme?", "Andy Burnham"),
    ("How much would be saved on the National Programme for IT as a whole?", "£1.8 billion"),
    ("When did the present government announce a further £700m cut?", "September 2009"),
    ("How much of the further £700m cut came from CSC's deal?", "£200m"),
    ("How many Lorenzo deployments have been completed so far?", "10"),
]


@pytest.mark.parametrize(("question", "expected"), FACTUAL)
def test_factual_questions(real_pipeline, question, expected):
    answer = real_pipeline.ask(question)
    assert not answer.abstained, answer.reason
    assert _states(answer.text, expected), answer.text
    _assert_verified(answer, real_pipeline.documents)
    assert any(_states(c.quote, expected) for c in answer.citations)  # the support is quoted


UNANSWERABLE = [
    "Write a poem about the NHS",
    "What is the capital of Australia?",
    "What was CSC's revenue in 2011?",
    "Who won the 2010 World Cup?",
    "How much does a Lorenzo licence cost?",
]


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_off_topic_and_unanswerable_questions_abstain(real_pipeline, question):
    answer = real_pipeline.ask(question)
    assert answer.abstained and answer.mode is AnswerMode.ABSTAINED
    assert answer.citations == ()
    assert "do not say" in answer.text
    assert answer.timings_ms["generate"] == 0  # the model never decides this


def test_generator_is_greedy_and_deterministic(real_pipeline):
    from qa.generate import build_messages

    messages = build_messages(
        "How many GP practices?", ["CSC was contracted to install systems at 4,400 GP practices."]
    )
    first = real_pipeline.generator.generate(messages, max_new_tokens=12)
    second = real_pipeline.generator.generate(messages, max_new_tokens=12)
    assert first == second and first.strip()


def test_hybrid_and_sentence_scoring_rank_the_savings_sentence_first(real_pipeline):
    from qa.answer_types import expected_type
    from qa.rank import score_sentences
    from qa.retrieve import question_terms

    q = "How much is CSC saving?"
    r = real_pipeline.retriever
    v = r.embed_query(q)
    ranked = score_sentences(r, [t for t, _ in question_terms(q)], v, r.search(q, v, 8), expected_type(q))
    assert "£1 billion savings" in ranked[0].sentence.text
    # Dense similarity alone does not put it first; the lexical and money cues do.
    by_dense = sorted(ranked, key=lambda s: -s.dense)
    assert "£1 billion savings" not in by_dense[0].sentence.text


def test_a_local_model_directory_plugs_in_without_code_changes(real_settings):
    """QA_GENERATOR=local with any Hugging Face directory (here: the converted packaged model)."""
    from qa.generate import convert_packaged_model
    from qa.pipeline import Pipeline

    model_dir = convert_packaged_model(real_settings.cache_dir)
    settings = real_settings.model_copy(update={"generator": "local", "generator_path": model_dir})
    pipeline = Pipeline.from_settings(settings)
    assert pipeline.generator.model_id == str(model_dir)
    answer = pipeline.ask("How many GP practices was CSC contracted to install a care records system at?")
    assert "4,400" in answer.text and answer.citations
