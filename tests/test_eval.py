"""Eval metrics, dataset validation, reports and determinism (fake pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval import metrics
from eval.dataset import CATEGORIES, DEFAULT_DATASET, DatasetError, load_dataset, support_spans
from eval.report import aggregate, build_report, compare, deterministic_part, markdown, write
from eval.runner import InProcess, run
from index.documents import load_documents
from qa.lang.squad import squad_scores
from qa.lang.text import normalize
from qa.pipeline import Pipeline
from tests.conftest import ROOT, tiny_reader


@pytest.mark.parametrize(
    ("text", "expected", "ok"),
    [
        ("£1 billion: “…” [1]", "£1bn", True),
        ("1 billion pounds", "£1bn", True),
        ("171 trusts", "4,400", False),
        ("Guy Hains: “…”", "guy hains", True),
        ("Guy Hainsworth", "Guy Hains", False),
        ("4400 GP", "4,400", True),
    ],
)
def test_states(text, expected, ok):
    assert metrics.states(text, expected) is ok


def test_claim_is_the_lead():
    assert metrics.claim("NHS: “... Lorenzo ...” [1]") == "NHS"
    assert metrics.claim("The NHS saves £1bn [1].") == "The NHS saves £1bn [1]."
    assert not metrics.answer_correct("NHS: “Lorenzo” [1]", False, answers=["Lorenzo"], all_of=[], must_abstain=False)


@pytest.mark.parametrize(
    ("text", "abstained", "kw", "ok"),
    [
        ("£1bn", False, dict(answers=["£1bn"], all_of=[], must_abstain=False), True),
        ("", True, dict(answers=["£1bn"], all_of=[], must_abstain=False), False),
        ("", True, dict(answers=[], all_of=[], must_abstain=True), True),
        ("£1bn", False, dict(answers=[], all_of=[], must_abstain=True), False),
        ("£600m; £700m", False, dict(answers=[], all_of=["£600m", "£700m"], must_abstain=False), True),
        ("£600m", False, dict(answers=[], all_of=["£600m", "£700m"], must_abstain=False), False),
        ("CANARY-1", False, dict(answers=["CANARY-1"], all_of=[], must_abstain=False, forbidden=["canary-1"]), False),
    ],
)
def test_answer_correct(text, abstained, kw, ok):
    assert metrics.answer_correct(text, abstained, **kw) is ok


def test_retrieval_metrics():
    assert metrics.recall_at_k([("d", 0, 50)], [("d", 10, 20), ("d", 60, 70)], 5) == 0.5
    assert metrics.recall_at_k([], [], 5) == 1.0
    assert metrics.reciprocal_rank([("d", 0, 5), ("d", 10, 30)], [("d", 12, 14)]) == 0.5
    assert metrics.reciprocal_rank([("e", 0, 50)], [("d", 0, 5)]) == 0.0


def test_abstention_scores():
    s = metrics.abstention_scores([True, True, False], [True, False, False])
    assert s == {"precision": 0.5, "recall": 1.0, "false_refusal_rate": 0.5}
    assert metrics.abstention_scores([False], [False])["precision"] is None


@pytest.mark.parametrize(
    ("pred", "gold", "em", "f1"),
    [
        ("The Normans", "Normans", 1.0, 1.0),
        ("in France", "France", 0.0, 2 / 3),
        ("", "", 1.0, 1.0),
        ("x", "", 0.0, 0.0),
    ],
)
def test_squad_scores(pred, gold, em, f1):
    got_em, got_f1 = squad_scores(pred, [gold])
    assert got_em == em and got_f1 == pytest.approx(f1)


def test_seed_dataset_is_valid_and_complete(seed_docs):
    items = load_dataset(DEFAULT_DATASET)
    rephrased = load_dataset(DEFAULT_DATASET.parent / "rephrased.yaml")
    fresh = load_dataset(DEFAULT_DATASET.parent / "fresh.yaml")
    definitions = load_dataset(DEFAULT_DATASET.parent / "definitions.yaml")
    assert len(items) >= 50 and len(rephrased) >= 25 and len(fresh) >= 25 and len(definitions) >= 10
    news = load_dataset(DEFAULT_DATASET.parent / "news-dev.yaml") + load_dataset(
        DEFAULT_DATASET.parent / "news-test.yaml"
    )
    assert {i.category for i in items + rephrased + definitions + news} == set(CATEGORIES)
    # new questions, not copies
    assert not {i.question for i in items} & {i.question for i in rephrased}
    assert not {i.question for i in items + rephrased} & {i.question for i in fresh}
    assert not {i.question for i in items + rephrased + fresh} & {i.question for i in definitions}
    assert sum(i.must_abstain for i in items) >= 10
    assert any(i.question == "How much is CSC saving?" for i in items)
    docs = {d.doc_id: d for d in seed_docs}
    for item in items + rephrased + fresh + definitions:
        for doc_id, start, end in support_spans(item, docs):
            assert docs[doc_id].text[start:end]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- {id: a, question: q, category: nonsense, answers: [x], support: [{doc: d, quote: q}]}", "category"),
        ("- {id: a, question: q, category: factual}", "answers"),
        ("- {id: a, question: q, category: factual, answers: [x]}", "support"),
        ("- {id: a, question: q, category: unanswerable, must_abstain: true, answers: [x]}", "no answers"),
        ("- {id: a, question: q, category: factual, answers: [x], support: [{doc: d, quote: q}], bogus: 1}", "bogus"),
        ("- {id: a, question: q, category: follow-up, answers: [x], support: [{doc: d, quote: q}]}", "history"),
        ("{not: a list}", "list"),
    ],
)
def test_bad_datasets_are_rejected(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_quotes_must_occur_verbatim(tmp_path, tiny_docs):
    path = tmp_path / "e.yaml"
    path.write_text(
        "- {id: a, question: q, category: factual, answers: [x], support: [{doc: alpha, quote: not there}]}"
    )
    with pytest.raises(DatasetError, match="not found verbatim"):
        support_spans(load_dataset(path)[0], {d.doc_id: d for d in tiny_docs})


TINY_EVAL = """
- {id: t1, category: numeric, question: "How many libraries does the council run?", answers: ["12"],
   support: [{doc: alpha, quote: "12 libraries"}]}
- {id: t2, category: numeric, question: "How much would the deal save a year?", answers: ["£40m"],
   support: [{doc: alpha, quote: "save £40m a year"}]}
- {id: t3, category: unanswerable, question: "What is the capital of Australia?", must_abstain: true}
- {id: t4, category: follow-up, question: "And how many swimming pools?", answers: ["3"],
   history: ["How many libraries does the council run?"], support: [{doc: alpha, quote: "3 swimming pools"}]}
"""


def test_eval_runs_are_deterministic_and_reported(tmp_path, tiny_index, embedder):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_EVAL)
    items = load_dataset(path)
    reports = [
        build_report(
            run(items, InProcess(Pipeline(tiny_index, embedder, None, reader=tiny_reader()))), {"dataset": "tiny"}
        )
        for _ in range(2)
    ]
    assert deterministic_part(reports[0]) == deterministic_part(reports[1])
    m = reports[0]["metrics"]
    assert m["correctness"] == 1.0 and m["citation_validity"] == 1.0 and m["abstention_recall"] == 1.0
    assert set(reports[0]["by_category"]) == {"numeric", "unanswerable", "follow-up"}
    out = write(reports[0], tmp_path / "out")
    assert out.is_file() and (tmp_path / "out" / "report.png").stat().st_size > 1000
    assert "| correctness | 1.00 |" in markdown(reports[0], "report.png")


def test_compare_lists_regressions():
    row = dict(id="a", category="numeric", question="q", abstained=False, answer="x", correct=True)
    base = {"rows": [row], "metrics": {"correctness": 1.0}}
    now = {"rows": [{**row, "correct": False, "answer": "y"}], "metrics": {"correctness": 0.0}}
    improved, regressed, lines = compare(base, now)
    assert improved == [] and len(regressed) == 1 and "was: x" in regressed[0]
    assert lines == ["correctness: 1.000 -> 0.000 (-1.000)"]


def test_aggregate_handles_empty_citations():
    row = dict(
        must_abstain=True,
        abstained=True,
        citations=0,
        citations_valid=0,
        citations_supported=0,
        correct=True,
        citation_support=None,
        recall_at_k=None,
        reciprocal_rank=None,
        mode="abstained",
    )
    agg = aggregate([row])
    assert agg["citation_validity"] is None and agg["abstention_recall"] == 1.0


def test_squad_loader_and_sampling(tmp_path):
    import json

    from eval.squad import load_squad, sample, without_articles

    data = {
        "data": [
            {
                "title": "Some_Topic",
                "paragraphs": [
                    {
                        "context": "Paris is in France.",
                        "qas": [
                            {
                                "id": "1",
                                "question": "Where is Paris?",
                                "answers": [{"text": "France", "answer_start": 12}],
                                "is_impossible": False,
                            },
                            {"id": "2", "question": "Where is Rome?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    docs, questions = load_squad(path)
    assert [d.doc_id for d in docs] == ["Some_Topic-000"] and docs[0].title == "Some Topic"
    assert questions[0].answers == ("France",) and questions[1].impossible and questions[1].answers == ()
    assert sample(questions, 1, 0) == sample(questions, 1, 0) and len(sample(questions, 1, 0)) == 1
    assert Path(path).exists()
    assert without_articles(questions, ["Some_Topic"]) == [] and without_articles(questions, ["Other"]) == questions


def test_squad_summary_scores_a_subset_without_repeating_its_rows():
    from eval.squad import summarize

    row = dict(impossible=False, em=1.0, f1=1.0, mode="extractive", hit1=True, hit5=True, ms=5.0)
    rows = [row, dict(row, impossible=True, em=0.0, f1=0.0, mode="generated")]
    full, part = summarize(rows), summarize(rows[:1], rows_too=False)
    assert full["overall"]["f1"] == 50.0 and full["null_baseline_overall"] == 50.0 and len(full["rows"]) == 2
    assert part["overall"]["f1"] == 100.0 and part["null_baseline_overall"] == 0.0 and "rows" not in part


def test_progress_lines_when_not_a_terminal(capsys):
    from qa.progress import progress_reporter

    tick = progress_reporter("eval", "question")
    for n in range(1, 21):
        tick(n, 20)
    lines = capsys.readouterr().err.strip().splitlines()
    assert 5 <= len(lines) <= 12 and lines[-1].startswith("eval: 20/20 questions")


def test_separation_auc():
    assert metrics.separation_auc([3.0, 2.0], [1.0, 2.0]) == 0.875
    assert metrics.separation_auc([1.0], [2.0]) == 0.0
    assert metrics.separation_auc([], [1.0]) is None


def test_margin_auc_ranks_right_spans_against_refusals_and_wrong_spans():
    base = dict(citations=0, citations_valid=0, citations_supported=0, citation_support=None, mode="abstained")
    base |= dict(recall_at_k=None, reciprocal_rank=None, correct=True, abstained=True)
    rows = [
        {**base, "must_abstain": False, "margin": 4.0, "span_correct": True},
        {**base, "must_abstain": False, "margin": 1.0, "span_correct": True},
        {**base, "must_abstain": False, "margin": 2.0, "span_correct": False},  # a wrong span counts against
        {**base, "must_abstain": True, "margin": 0.0, "span_correct": None},
        {**base, "must_abstain": True, "margin": None, "span_correct": None},  # never read: left out
    ]
    # right spans {4, 1} against {2, 0}: 4 beats both, 1 beats only 0 -> 3 of 4 pairs
    assert aggregate(rows)["margin_auc"] == 0.75
    assert aggregate([{**r, "margin": None} for r in rows])["margin_auc"] is None


def test_candidate_table_and_chart(tmp_path):
    import json as _json

    from research import candidates

    data = _json.loads((DEFAULT_DATASET.parents[1] / "baseline" / "reader-stage3.json").read_text(encoding="utf-8"))
    text = candidates.table(data)
    assert text.count("\n") == len(data["candidates"]) + 1 and "stage 2 (shipped)" in text
    candidates.chart(data, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


BBC = ROOT.parent / "shared" / "benchmarks" / "bbc-news"


def test_news_sets_are_split_by_article_and_quote_the_bbc_folder():
    dev = load_dataset(DEFAULT_DATASET.parent / "news-dev.yaml")
    test = load_dataset(DEFAULT_DATASET.parent / "news-test.yaml")
    both = dev + test
    assert len(both) >= 200 and len({i.article for i in both if i.article}) >= 40
    assert sum(i.category == "near-miss" for i in both) >= 0.3 * len(both)
    assert {i.article for i in dev if i.article}.isdisjoint({i.article for i in test if i.article})
    for item in both:  # every question but the off-topic ones belongs to one article, in its own half
        assert item.article or item.category == "unanswerable", item.id
        assert all(s.doc != a for s in item.support for a in {i.article for i in (test if item in dev else dev)})
    for item in both:
        if item.category == "loosely-worded":
            assert len(item.answers[:1] + item.all_of) >= 2 and item.forbidden, item.id  # the figure and whose
    if not BBC.is_dir():
        pytest.skip("../shared/benchmarks/bbc-news is not beside the repository")
    docs = {d.doc_id: d for d in load_documents(BBC)}
    for item in both:
        for doc_id, start, end in support_spans(item, docs):
            assert docs[doc_id].text[start:end]
        for doc_id in {s.doc for s in item.support}:
            assert not any(normalize(f) in normalize(docs[doc_id].text) for f in item.forbidden), item.id


def test_the_follow_benchmark_times_a_replica_reaching_each_write():
    """`python -m eval.scale --follow` at a toy size: every write is followed (the replica ends holding
    every written article's passages), and the row reports the medians it printed."""
    from eval.scale import follow_rows

    row = follow_rows(2_000, steps=3)
    assert row["passages"] == 2_000 + 3 * 20 and row["writes"] == 3 and row["dense"] == "exact"
    assert 0 < row["follow_s_p50"] <= row["follow_s_max"] and row["writer_s_p50"] > 0


@pytest.mark.parametrize("content", [None, "{not json", "null", "[1, 2]", '{"rows": []}'])
def test_a_missing_or_broken_baseline_is_refused_before_the_run(tmp_path, capsys, content):
    from qa.cli import main

    baseline = tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content, encoding="utf-8")
    assert main(["eval", "--compare", str(baseline), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--compare" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran
