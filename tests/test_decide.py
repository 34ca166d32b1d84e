"""The answer-or-abstain decision with fakes: its inputs, its logistic model, its choice among candidates,
and answers that say whose a figure is when the question gave the party another role."""

from __future__ import annotations

import math

import pytest

from qa.decide.decision import Candidate, Decider, Decision, fake_decider
from qa.decide.features import FEATURES, candidate_features, coverage, missing_names, type_fit
from qa.decide.verifier import FakeVerifier, verdict_from_logits, verifier_input
from qa.lang.attribution import attributed_lead, names_in
from qa.pipeline import LOOSE_REASON, Pipeline, loose_answer
from qa.question import parse_question
from qa.reader.reader import FakeReader
from qa.types import AnswerMode


@pytest.mark.parametrize(
    ("text", "span", "window"),
    [
        (
            "Shares fell. The club was sold for £30m. Fans protested.",
            "£30m",
            "Shares fell. The club was sold for «£30m».",
        ),
        ("The club was sold for £30m. Fans protested.", "£30m", "The club was sold for «£30m»."),
        ("One. Two. It cost £5m to build. Four.", "£5m", "Two. It cost «£5m» to build."),
    ],
)
def test_the_verifier_reads_the_span_sentence_and_the_one_before(text, span, window):
    start = text.index(span)
    assert verifier_input(text, start, start + len(span)) == window


def test_a_long_sentence_is_cut_around_the_span():
    text = "word " * 400 + "it cost £5m " + "word " * 400
    start = text.index("£5m")
    window = verifier_input(text, start, start + 3, max_chars=200)
    assert "«£5m»" in window and len(window) <= 202


@pytest.mark.parametrize(
    ("question", "text", "missing"),
    [
        ("How much did Acme save in 2003?", "In 2004 Acme saved £5m.", 1),  # another year
        ("How much did Acme save in 2004?", "In 2004 Acme saved £5m.", 0),
        ("How much did Globex pay Acme?", "In 2004 Acme saved £5m.", 1),  # a party the text does not involve
        ("How much did Globex pay Initech in 2001?", "Acme saved £5m.", 3),
    ],
)
def test_missing_names_counts_the_questions_names_and_numbers_the_text_lacks(question, text, missing):
    assert missing_names(parse_question(question), text) == missing


def test_type_fit_and_coverage():
    q = parse_question("How much did Acme save?")
    assert (type_fit(q, "£5m"), type_fit(q, "Acme"), type_fit(parse_question("Why did it fail?"), "x")) == (1, -1, 0)
    assert coverage(q, "Acme's savings were large") == 1.0
    assert coverage(q, "Acme grew") == 0.5


def test_candidate_features_name_every_feature_the_decision_may_use():
    q = parse_question("How much did Acme save?")
    c = Candidate("£5m", "Acme saved «£5m».", "Acme saved £5m.", margin=30.0, rank=2, dense=0.4)
    feats = candidate_features(q, c, verifier_logit=1.5, best_margin=40.0)
    assert set(feats) == set(FEATURES)
    assert feats["margin"] == 12.0 and feats["margin_gap"] == 0.0  # both clipped at 12
    assert feats["rank"] == 2.0 and feats["verifier"] == 1.5


def test_the_margin_only_decision_is_the_old_rule():
    d = Decision.margin_only(2.0)
    assert d.probability({"margin": 2.0}) == pytest.approx(0.5)
    assert d.probability({"margin": 1.9}) < 0.5 < d.probability({"margin": 2.1})
    assert d.probability({"margin": 1e4}) == 1.0 and d.probability({"margin": -1e4}) == 0.0  # no overflow


def test_a_decision_standardises_then_weighs():
    d = Decision(("verifier", "margin"), (2.0, -1.0), 0.5, (1.0, 0.0), (2.0, 1.0))
    z = 0.5 + 2.0 * (3.0 - 1.0) / 2.0 - 1.0 * 1.0
    assert d.probability({"verifier": 3.0, "margin": 1.0}) == pytest.approx(1 / (1 + math.exp(-z)))


def test_the_decider_judges_every_candidate_with_one_verifier_batch():
    calls = []

    class Counting(FakeVerifier):
        def score(self, pairs):
            calls.append(list(pairs))
            return super().score(pairs)

    decider = Decider(Counting({"save": 4.0}), Decision(("verifier",), (1.0,), 0.0, (0.0,), (1.0,)))
    q1, q2 = parse_question("How much did Acme save?"), parse_question("Who runs Acme?")
    cands = [Candidate("£5m", "«£5m»", "", 1.0, 1, 0.5), Candidate("£6m", "«£6m»", "", 0.0, 2, 0.4)]
    judged = decider.judge_many([(q1, cands), (q2, cands[:1])])
    assert len(calls) == 1 and len(calls[0]) == 3
    assert [len(j) for j in judged] == [2, 1] and not any(j.loose for js in judged for j in js)
    assert judged[0][0].p == pytest.approx(1 / (1 + math.exp(-4.0))) and judged[1][0].p == 0.5


def test_the_pipeline_answers_with_the_most_probable_candidate(tiny_index, embedder):
    # The reader's best margin is "12" (libraries); the verifier prefers the pools' span.
    reader = FakeReader({"libraries": "12", "swimming": "3 swimming pools"})
    decider = Decider(
        FakeVerifier({"libraries": 0.0}),
        Decision(("verifier", "rank"), (0.0, -3.0), 0.0, (0.0, 0.0), (1.0, 1.0), threshold=0.01),
    )
    answer = Pipeline(tiny_index, embedder, None, reader=reader, decider=decider).ask(
        "How many libraries and swimming pools?"
    )
    assert not answer.abstained
    assert answer.evidence["p_answer"] >= 0.01 and set(answer.evidence["features"]) == {"verifier", "rank"} | set(
        FEATURES
    )


def test_below_the_operating_point_the_pipeline_abstains_and_says_why(tiny_index, embedder):
    pipeline = Pipeline(tiny_index, embedder, None, reader=FakeReader({"libraries": "12"}), decider=fake_decider(10.5))
    answer = pipeline.ask("How many libraries does the council run?")
    assert answer.abstained and answer.evidence["span"] == "12"
    assert answer.evidence["p_answer"] < answer.evidence["threshold"] == 0.5


# -- loosely worded questions ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("logits", "answer", "loose"),
    [
        ([2.0], 2.0, -math.inf),  # a two-way head: its logit is the answer's log-odds
        ([0.0, 1.0, 1.0], math.log(2 * math.e), 0.0),  # answer = either of the two answer classes
        ([3.0, -1.0, 2.0], math.log(math.exp(-1) + math.exp(2)) - 3.0, 3.0),
    ],
)
def test_a_three_way_head_reads_as_answer_and_loose_log_odds(logits, answer, loose):
    v = verdict_from_logits(logits)
    assert v.answer == pytest.approx(answer) and v.loose == pytest.approx(loose)


def test_a_loosely_worded_question_is_answered_in_the_quotes_words(tiny_index, embedder, scripted):
    # alpha: "Mayor Jane Doe said the deal would save £40m a year." Northtown is not who saves it.
    scripted._script = "Northtown saves £40m a year [1]."
    decider = fake_decider(0.0, loose=["northtown"])
    pipeline = Pipeline(tiny_index, embedder, scripted, reader=FakeReader({"saving": "£40m"}), decider=decider)
    answer = pipeline.ask("How much is Northtown saving?")
    assert answer.mode is AnswerMode.EXTRACTIVE and answer.reason == LOOSE_REASON
    assert answer.text == loose_answer([c.quote for c in answer.citations])
    assert "£40m" in answer.text and "Northtown saves" not in answer.text
    assert scripted.calls == []  # never phrased by the generator, which would take the question's framing


def test_a_well_worded_question_keeps_its_short_answer(tiny_index, embedder, scripted):
    scripted._script = "The deal would save £40m a year [1]."
    decider = fake_decider(0.0, loose=["northtown"])
    pipeline = Pipeline(tiny_index, embedder, scripted, reader=FakeReader({"save": "£40m"}), decider=decider)
    answer = pipeline.ask("How much would the deal save?")
    assert answer.mode is AnswerMode.GENERATED and answer.text == "The deal would save £40m a year [1]."


# -- the shipped files ---------------------------------------------------------------------------------
def test_every_shipped_weight_file_matches_its_model_card():
    """Each model folder's weight files: listed with their sha256 in its config, the same digest in its
    MODEL_CARD.md, and at most 50 MB (the repository's limit per file)."""
    from index.store import sha256_file
    from tests.conftest import ROOT

    folders = sorted(p.parent for p in (ROOT / "qa").glob("*/model/MODEL_CARD.md"))
    assert {f.parent.name for f in folders} >= {"reader", "decide"}
    for folder in folders:
        card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
        configs = " ".join(p.read_text(encoding="utf-8") for p in folder.glob("*.json"))
        for weights in sorted(folder.glob("*.safetensors")):
            digest = sha256_file(weights)
            assert digest in configs and digest in card, weights.name
            assert weights.stat().st_size <= 50 * 1024 * 1024, weights.name


def test_verifier_weights_that_do_not_match_their_sha256_are_refused(tmp_path):
    import json

    from qa.decide.verifier import CONFIG_FILE, TransformerVerifier
    from qa.errors import ModelNotFound

    spec = {"weights": "verifier-delta.safetensors", "sha256": "0" * 64, "labels": 3}
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"verifier": spec}), encoding="utf-8")
    (tmp_path / "verifier-delta.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelNotFound, match="sha256"):
        TransformerVerifier(tmp_path).warm_up()


# -- whose a figure is (the quote's words) ---------------------------------------------------------------
QUOTE = "Lansley confirmed that around £1bn savings will be delivered to the NHS from CSC’s contract for the North."


def test_names_in_keeps_names_apart_and_drops_function_words():
    found = [n for _, _, n in names_in("But the NHS met Andrew Lansley and the Bank of England.")]
    assert found == ["NHS", "Andrew Lansley", "Bank of England"]


@pytest.mark.parametrize(
    ("quote", "span", "names", "lead"),
    [
        (QUOTE, "around £1bn", ["CSC"], "around £1bn savings will be delivered to the NHS"),  # CSC's role is wrong
        (QUOTE, "around £1bn", ["NHS", "CSC"], None),  # the question names whose it is
        (QUOTE, "around £1bn", [], None),  # names nobody of the quote
        (QUOTE, "around £1bn", ["Viacom"], None),  # a party the quote does not involve: the decision's business
        ("Ministers said the council will save £6m from Acme's deal.", "£6m", ["Acme"], "the council will save £6m"),
        ("Acme hired Jane Doe from Globex.", "Jane Doe", ["Globex"], None),  # only figures
    ],
)
def test_a_loosely_worded_question_gets_the_quotes_own_attribution(quote, span, names, lead):
    assert attributed_lead(quote, span, names) == lead


def test_the_pipeline_says_whose_the_figure_is(embedder, scripted, tmp_path):
    from index.documents import parse_document
    from index.store import build_index, load_index, save_index

    text = "Ferry deal\n\nThe minister said the islands council will save £6m a year from Northsea's new contract."
    save_index(build_index([parse_document("ferry", text)], embedder), tmp_path)
    scripted._script = "Northsea is saving £6m a year [1]."  # what a generator makes of the question's framing
    pipeline = Pipeline(load_index(tmp_path, embedder), embedder, scripted, reader=FakeReader({"saving": "£6m"}))
    answer = pipeline.ask("How much is Northsea saving?")
    assert answer.mode is AnswerMode.EXTRACTIVE and answer.reason == LOOSE_REASON
    assert answer.text.startswith("the islands council will save £6m: “") and scripted.calls == []
