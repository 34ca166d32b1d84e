"""End-to-end answers with the real packaged models on the seed articles."""

from __future__ import annotations

import pytest

from qa.citations import citation_is_valid, parse_markers
from qa.lang.numbers import find_quantities, same_quantity
from qa.lang.text import normalize
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


def test_mission_question_is_answered_with_whose_saving_it_is(real_pipeline):
    """The question's premise is loose: the NHS saves about £1bn from CSC's contract. The answer states
    the figure and whose saving it is, in the quote's words, and never credits CSC with a saving
    (£1.8bn is the whole programme, £9bn would be invented)."""
    answer = real_pipeline.ask("How much is CSC saving?")
    assert not answer.abstained, answer.reason
    assert _states(answer.short_answer, "£1bn"), answer.text
    assert "NHS" in answer.text.split("“")[0], answer.text  # whose saving, before the quote
    assert "CSC is saving" not in answer.text and "CSC saves" not in answer.text, answer.text
    _assert_verified(answer, real_pipeline.documents)
    assert all("NHS" in c.quote for c in answer.citations)


def test_savings_question_is_answered_from_the_nhs_quote(real_pipeline):
    answer = real_pipeline.ask("How much will the NHS save from the CSC deal?")
    assert not answer.abstained, answer.reason
    assert _states(answer.text, "£1bn"), answer.text
    _assert_verified(answer, real_pipeline.documents)
    assert any("£1 billion" in c.quote or "£1bn" in c.quote for c in answer.citations)


REFUSED = "refused: the decision's P is below the operating point (known miss, eval/README.md)"
FACTUAL = [
    ("How many GP practices was CSC contracted to install a care records system at?", "4,400"),
    ("How many NHS trusts were covered by CSC's contract?", "171"),
    ("How much was CSC's contract worth?", "£3.1bn"),
    ("Who is CSC's president of healthcare?", "Guy Hains"),
    ("Until when was the deadline extended?", "1 June"),
    ("Who announced that £600m would be cut from the programme?", "Andy Burnham"),
    ("How much would be saved on the National Programme for IT as a whole?", "£1.8 billion"),
    ("When did the present government announce a further £700m cut?", "September 2009"),
    # Answered by the rule-based pipeline; the trained reader and the decision refuse them (the seed
    # set's n07 refused at P 0.35). Known misses, kept visible.
    pytest.param(
        "How much of the further £700m cut came from CSC's deal?", "£200m", marks=pytest.mark.xfail(reason=REFUSED)
    ),
    pytest.param(
        "How many Lorenzo deployments have been completed so far?", "10", marks=pytest.mark.xfail(reason=REFUSED)
    ),
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
        "How many GP practices?", "4,400", "CSC was contracted to install systems at 4,400 GP practices."
    )
    first = real_pipeline.generator.generate(messages, max_new_tokens=12)
    second = real_pipeline.generator.generate(messages, max_new_tokens=12)
    assert first == second and first.strip()


def test_the_reader_picks_the_savings_span_from_the_retrieved_passages(real_pipeline):
    q = real_pipeline.parse("How much will the NHS save from the CSC deal?")
    k = real_pipeline.options.read_passages
    hits = real_pipeline.retriever.search(q.query, real_pipeline.retriever.embed_query(q.query), k)
    readings = real_pipeline.reader.read(q.query, [h.passage.text for h in hits])
    best = max(readings, key=lambda r: r.margin)
    assert _states(best.span, "£1bn"), best
    assert best.margin >= real_pipeline.reader.threshold


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


def test_cli_ask_json(real_index_dir):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "QA_INDEX_DIR": str(real_index_dir), "QA_GENERATOR": "none"}
    out = subprocess.run(
        [sys.executable, "-m", "qa.cli", "ask", "How much will the NHS save from the CSC deal?", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    body = json.loads(out.stdout)
    assert body["abstained"] is False and _states(body["answer"], "£1bn") and body["citations"]
    assert {"doc_id", "title", "start", "end", "text", "score"} == set(body["passages"][0])
