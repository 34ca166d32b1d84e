"""The training code's pure parts, fast: the verifier's synthetic near misses, its labels, its folds and
batches, and the decision's fit (none of these ship, but the shipped models come out of them)."""

from __future__ import annotations

import io
import json
import random

import pytest

from qa.decide.features import FEATURES
from train import augment
from train.decision import fit, truncated
from train.loop import StepLog, padded
from train.verifier import batch_order, fold_of, span_right

WINDOW = "Transport chiefs said the council will save «£6m» a year from Acme's ferry contract, signed in 2004."


def test_another_relation_is_a_near_miss_the_window_never_states():
    question, label = augment.other_relation("How much will the council save from the deal?", WINDOW, random.Random(0))
    assert label == augment.NOT_ANSWER
    assert "save" not in question and question != "How much will the council save from the deal?"


def test_another_year_is_one_the_passage_never_mentions():
    made = augment.other_year("How much did the council save in 2004?", WINDOW, random.Random(1), passage=WINDOW)
    assert made is not None
    question, label = made
    assert label == augment.NOT_ANSWER and "2004" not in question
    assert any(str(y) in question for y in range(1900, 2100))


def test_a_swapped_role_is_loose_and_a_synonym_is_still_an_answer():
    swapped = augment.swapped_role(
        "How much is Acme saving?", "The NHS saves «£5m» from Acme's contract.", random.Random(0)
    )
    assert swapped == ("How much is NHS saving?", augment.LOOSE)
    assert augment.synonym("Who scored?", "Mr Smith scored «twice».", random.Random(0)) is None  # nothing to reword
    worded = augment.synonym("Who bought the club?", "The club was sold to «Mr Smith».", random.Random(0))
    assert worded is not None and worded[1] == augment.ANSWER and "bought" not in worded[0]


def test_a_distractor_marks_another_figure_of_the_same_kind():
    question, window, label = augment.distractor("How many rooms?", "It has «12» rooms and 3 pools.", random.Random(0))
    assert (label, window) == (augment.NOT_ANSWER, "It has 12 rooms and «3» pools.")


@pytest.mark.parametrize(
    ("row", "span", "right"),
    [
        ({"impossible": False, "answers": ["Denver Broncos"]}, "the Denver Broncos", True),  # SQuAD: F1 >= 0.5
        ({"impossible": False, "answers": ["Denver Broncos"]}, "Carolina Panthers", False),
        ({"impossible": True, "answers": []}, "Denver Broncos", False),
        ({"must_abstain": False, "answers": ["£1bn"]}, "around £1 billion", True),  # eval rows: states the value
        ({"must_abstain": False, "answers": [], "all_of": ["£6m", "islands council"]}, "about £6m", True),
        ({"must_abstain": True, "answers": []}, "£6m", False),
    ],
)
def test_span_right_labels_like_the_eval_scores(row, span, right):
    assert span_right(row, span) is right


def test_folds_split_by_article_and_batches_cover_every_example_once():
    assert {fold_of(f"article-{n}", 2) for n in range(20)} == {0, 1}
    assert fold_of("article-3", 2) == fold_of("article-3", 2)
    order = batch_order(10, 4, seed=13, epoch=2)
    assert sorted(j for b in order for j in b) == list(range(10)) and [len(b) for b in order] == [4, 4, 2]
    assert order == batch_order(10, 4, seed=13, epoch=2) != batch_order(10, 4, seed=13, epoch=3)


def test_padded_batches_mask_the_padding():
    batch = padded([{"input_ids": [5, 6, 7], "token_type_ids": [0, 1, 1]}, {"input_ids": [5], "token_type_ids": [0]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_the_step_log_writes_a_row_every_twenty_steps():
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

        def set_postfix(self, **kw):
            self.postfix = kw

    log, bar = io.StringIO(), Bar()
    steps = StepLog(log, bar, steps_per_epoch=40, t0=0.0)
    for step in range(1, 41):
        steps.record(step, loss=1.0 if step <= 20 else 0.5, lr=1e-5)
    rows = [json.loads(line) for line in log.getvalue().splitlines()]
    assert bar.n == 40 and [(r["step"], r["epoch"], r["loss"]) for r in rows] == [(20, 0.5, 1.0), (40, 1.0, 0.5)]


def _row(kind: str, right: list[bool], margins: list[float], group: str, must_abstain: bool = False) -> dict:
    candidates = []
    for n, (ok, m) in enumerate(zip(right, margins, strict=True)):
        features = dict.fromkeys(FEATURES, 0.0) | {"margin": m, "rank": float(n + 1), "verifier": 2 * m}
        candidates.append({"features": features, "right": ok, "span": f"s{n}"})
    return {"kind": kind, "group": group, "must_abstain": must_abstain, "candidates": candidates}


def test_the_fit_learns_that_a_high_margin_candidate_is_right_and_truncation_drops_passages():
    rng = random.Random(0)
    rows = []
    for n in range(60):
        good = rng.random() < 0.5
        rows.append(_row("eval", [good, False, False], [3.0 if good else -3.0, -1.0, -2.0], f"a{n % 6}", not good))
    choose, decide = fit(rows, FEATURES)
    high = dict.fromkeys(FEATURES, 0.0) | {"margin": 3.0, "verifier": 6.0, "rank": 1.0}
    low = high | {"margin": -3.0, "verifier": -6.0}
    assert decide.probability(high) > 0.8 > 0.2 > decide.probability(low)
    assert choose.logit(high) > choose.logit(low)
    assert [len(r["candidates"]) for r in truncated(rows[:2], 2)] == [2, 2]


def test_the_verifier_comparison_metrics():
    from train.compare_verifiers import average_precision, roc_auc

    assert roc_auc([0, 1, 1], [0.1, 0.9, 0.1]) == 0.75
    assert abs(average_precision([0, 1, 1], [0.1, 0.9, 0.1]) - (0.5 + 0.5 * 2 / 3)) < 1e-9
    assert average_precision([0, 1], [0.2, 0.8]) == 1.0


def test_a_checkpoint_restores_weights_optimiser_schedule_and_dropout(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification

    from train.loop import load_checkpoint, optimizer_step, restore, save_checkpoint

    def tiny():  # noqa: ANN202
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
        )
        model = BertForSequenceClassification(config)
        for p in model.bert.embeddings.parameters():
            p.requires_grad = False
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
        return model, params, opt, sched

    batch = {"input_ids": torch.tensor([[1, 5, 7, 2]]), "labels": torch.tensor([1])}
    model, params, opt, sched = tiny()
    optimizer_step(model(**batch).loss, params, opt, sched)
    save_checkpoint(tmp_path / "ck" / "state.pt", model, opt, sched, 1, t0=0.0, note="extra")
    assert not (tmp_path / "ck" / "state.tmp").exists()
    dropout = torch.rand(3)  # what the random stream gives next, after the save
    optimizer_step(model(**batch).loss, params, opt, sched)  # the run goes on, then stops

    again, params2, opt2, sched2 = tiny()
    state = load_checkpoint(tmp_path / "ck" / "state.pt")
    restore(state, again, opt2, sched2)
    assert state["step"] == 1 and state["note"] == "extra" and state["elapsed_s"] > 0
    assert not any(k.startswith("bert.embeddings.") for k in state["model"])  # frozen: read from the base
    torch.testing.assert_close(torch.rand(3), dropout)
    optimizer_step(again(**batch).loss, params2, opt2, sched2)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
