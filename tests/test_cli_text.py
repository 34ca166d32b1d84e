"""`qa ask` without --json: the answer for a terminal, with the closest passages when it abstains."""

from __future__ import annotations

from api.cli import as_text


def test_an_abstention_lists_the_closest_passages_it_promises(tiny_pipeline):
    answer = tiny_pipeline.ask("What is the capital of Australia?")
    assert answer.abstained and "closest passages are listed" in answer.text
    lines = as_text(answer).splitlines()
    closest = [line for line in lines if line.startswith("  closest: ")]
    assert lines[0] == answer.text
    assert len(closest) == min(3, len(answer.hits)) > 0
    first = answer.hits[0].passage
    assert closest[0].startswith(f"  closest: {first.doc_id} {first.start}:{first.end}  ")
    assert all(len(line.split("  ", 2)[2]) <= 100 for line in closest)  # each passage cut to the width


def test_an_answer_lists_its_citations_and_no_passages(tiny_pipeline):
    answer = tiny_pipeline.ask("How many libraries does the council run?")
    assert not answer.abstained and answer.citations
    lines = as_text(answer).splitlines()
    assert lines == [answer.text] + [f"  [{c.id}] {c.doc_id} {c.start}:{c.end}  {c.title}" for c in answer.citations]


def test_a_long_passage_is_cut_with_an_ellipsis_on_one_line(tiny_pipeline):
    answer = tiny_pipeline.ask("Who won the 1966 World Cup?")
    line = [x for x in as_text(answer, closest=1, width=20).splitlines() if x.startswith("  closest: ")][0]
    whole = " ".join(answer.hits[0].passage.text.split())
    assert len(whole) > 20
    assert line.split("  ", 2)[2] == whole[:19].rstrip() + "…"


def test_a_bad_or_retired_setting_is_one_clear_line_and_exit_2(monkeypatch, capsys):
    from qa.cli import main

    monkeypatch.setenv("QA_READER_THRESHOLD", "2.6")
    assert main(["index", "build", "--if-stale"]) == 2
    err = capsys.readouterr().err
    assert "QA_ANSWER_THRESHOLD" in err and "Traceback" not in err
    monkeypatch.delenv("QA_READER_THRESHOLD")
    monkeypatch.setenv("QA_ANSWER_THRESHOLD", "1.5")  # a probability: at most 1
    assert main(["index", "build", "--if-stale"]) == 2
    assert "QA_ANSWER_THRESHOLD" in capsys.readouterr().err
