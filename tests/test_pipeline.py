"""The answering pipeline with fakes: hashing embedder + scripted generator, on a tiny corpus."""

from __future__ import annotations

import pytest

from qa.citations import citation_is_valid, parse_markers
from qa.errors import BadQuestion, BadRequest, GeneratorError
from qa.generate import ScriptedGenerator
from qa.pipeline import Pipeline, PipelineOptions
from qa.types import AnswerMode
from tests.conftest import tiny_reader


def _check_citations(answer, docs):
    assert all(citation_is_valid(c, docs) for c in answer.citations)
    assert sorted(parse_markers(answer.text)) == [c.id for c in answer.citations]


def test_verified_generation_is_kept(tiny_pipeline, scripted):
    scripted._script = "The council agreed a £2.5bn budget [1]."
    answer = tiny_pipeline.ask("How much was the council budget?")
    assert answer.mode is AnswerMode.GENERATED
    assert answer.text == "The council agreed a £2.5bn budget [1]."
    assert "£2.5bn" in answer.citations[0].quote
    _check_citations(answer, tiny_pipeline.documents)


def test_hallucinated_amount_falls_back_to_extractive(tiny_pipeline, scripted):
    scripted._script = "The council agreed a £3.5bn budget [1]."
    answer = tiny_pipeline.ask("How much was the council budget?")
    assert answer.mode is AnswerMode.EXTRACTIVE
    assert "unsupported quantity" in answer.reason
    assert answer.text.startswith("£2.5bn: “")
    _check_citations(answer, tiny_pipeline.documents)


def test_answer_without_markers_is_cited_automatically(tiny_pipeline, scripted):
    scripted._script = "It runs 12 libraries."
    answer = tiny_pipeline.ask("How many libraries does the council run?")
    assert answer.mode is AnswerMode.GENERATED
    assert answer.text == "It runs 12 libraries. [1]"
    assert "12 libraries" in answer.citations[0].quote


def test_corroborating_source_from_other_document_is_cited(tiny_index, embedder):
    pipeline = Pipeline(tiny_index, embedder, None, reader=tiny_reader())
    answer = pipeline.ask("How much are the savings a year?")
    assert answer.mode is AnswerMode.EXTRACTIVE
    assert {c.doc_id for c in answer.citations} == {"alpha", "beta"}
    assert all("£40m" in c.quote for c in answer.citations)
    _check_citations(answer, pipeline.documents)


@pytest.mark.parametrize(
    "question", ["What is the capital of Australia?", "Write a poem about zebras", "Who won the 1966 World Cup?"]
)
def test_off_topic_questions_abstain_without_calling_the_generator(tiny_pipeline, scripted, question):
    answer = tiny_pipeline.ask(question)
    assert answer.abstained and answer.mode is AnswerMode.ABSTAINED
    assert answer.citations == ()
    assert answer.text.startswith("The articles do not say")
    assert answer.hits  # nearest passages are still shown
    assert scripted.calls == []


def test_failing_generator_degrades_to_extractive(tiny_index, embedder):
    class Broken(ScriptedGenerator):
        def generate(self, *a, **k):
            raise GeneratorError("server down")

    answer = Pipeline(tiny_index, embedder, Broken(), reader=tiny_reader()).ask(
        "How many libraries does the council run?"
    )
    assert answer.mode is AnswerMode.EXTRACTIVE
    assert "server down" in answer.reason


def test_prompt_holds_the_best_source(tiny_pipeline, scripted):
    tiny_pipeline.ask("How many swimming pools are there?")
    user = scripted.calls[0][-1]["content"]
    # the generator gets the question, the reader's span and the one sentence that holds it
    assert user == (
        "Source: The council runs 12 libraries and 3 swimming pools across Northtown.\n"
        "Question: How many swimming pools are there?\nAnswer: 3 swimming pools\nSentence:"
    )


def test_reader_reads_the_top_passages_in_one_call(tiny_index, embedder):
    reader = tiny_reader()
    Pipeline(tiny_index, embedder, None, PipelineOptions(read_passages=2), reader=reader).ask("How many libraries?")
    assert len(reader.calls) == 1 and len(reader.calls[0][1]) == 2


def test_a_span_below_the_calibrated_margin_abstains(tiny_index, embedder, scripted):
    reader = tiny_reader()
    reader.threshold = 10.5  # the fake's spans have margin 10
    answer = Pipeline(tiny_index, embedder, scripted, reader=reader).ask("How many libraries does the council run?")
    assert answer.abstained and answer.citations == () and scripted.calls == []
    assert answer.evidence["span"] == "12" and answer.evidence["margin"] == 10.0
    assert "none of the closest passages answers" in answer.text


def test_verified_answer_that_picks_the_wrong_figure_is_replaced(tiny_pipeline, scripted):
    scripted._script = "The council runs 3 libraries."  # 3 is in the quote, but it counts pools
    answer = tiny_pipeline.ask("How many libraries does the council run?")
    assert answer.mode is AnswerMode.EXTRACTIVE
    assert "does not state the reader's answer" in answer.reason
    assert answer.text.startswith("12: “")


def test_answer_prefix_is_dropped(tiny_pipeline, scripted):
    scripted._script = "Answer: The council runs 12 libraries.\nQuestion: and more"
    answer = tiny_pipeline.ask("How many libraries does the council run?")
    assert answer.text == "The council runs 12 libraries. [1]"


@pytest.mark.parametrize(
    ("question", "top_k", "error"),
    [
        ("", None, BadQuestion),
        ("   \n", None, BadQuestion),
        ("x" * 1001, None, BadQuestion),
        ("ok?", 0, BadRequest),
        ("ok?", 21, BadRequest),
    ],
)
def test_bad_input(tiny_pipeline, question, top_k, error):
    with pytest.raises(error):
        tiny_pipeline.ask(question, top_k)


def test_top_k_limits_passages(tiny_pipeline):
    assert len(tiny_pipeline.ask("libraries", top_k=1).hits) == 1


def test_timings_are_reported(tiny_pipeline):
    t = tiny_pipeline.ask("How many libraries does the council run?").timings_ms
    assert set(t) == {"retrieve", "read", "decide", "generate", "verify", "total"}
    assert t["total"] >= t["retrieve"] >= 0


def test_options_carry_every_setting_they_name():
    """`qa eval squad` once built its pipeline without them, so QA_READER_PASSAGES=8 read 3 passages."""
    from qa.config import Settings

    settings = Settings(
        reader_passages=8, max_new_tokens=7, max_question_chars=50, default_top_k=4, max_top_k=9, _env_file=None
    )
    assert PipelineOptions.from_settings(settings) == PipelineOptions(
        max_question_chars=50, default_top_k=4, max_top_k=9, read_passages=8, max_new_tokens=7
    )
