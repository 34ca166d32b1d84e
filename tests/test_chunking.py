from __future__ import annotations

import pytest

from index.chunking import chunk_document, split_sentences
from index.documents import parse_document


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two.", ["One.", "Two."]),
        ("Mr. Smith went. He came back.", ["Mr. Smith went.", "He came back."]),
        ("He said “yes.” Then left.", ["He said “yes.”", "Then left."]),
        ("Costs rose to £3.1bn. CSC agreed.", ["Costs rose to £3.1bn.", "CSC agreed."]),
        ("A headline\n\nA body sentence.", ["A headline", "A body sentence."]),
        ("J. Smith spoke. U.S. officials agreed.", ["J. Smith spoke.", "U.S. officials agreed."]),
        ("End of text without stop", ["End of text without stop"]),
        ("   ", []),
    ],
)
def test_split_sentences(text, expected):
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == expected


def test_offsets_index_original_text_with_nbsp_and_typographic_quotes():
    text = "CSC’s deal\u00a0is worth £3.1bn. The NHS “saves” £1bn.\u00a0 Next one."
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["CSC’s deal\u00a0is worth £3.1bn.", "The NHS “saves” £1bn.", "Next one."]


def test_passages_overlap_and_cover_every_sentence(seed_docs):
    doc = seed_docs[0]
    sentences, passages = chunk_document(
        doc, first_sentence_id=0, first_passage_id=0, sentences_per_passage=3, overlap=1
    )
    assert sentences and passages
    for s in sentences:
        assert doc.text[s.start : s.end] == s.text
    for p in passages:
        assert doc.text[p.start : p.end] == p.text
        assert 1 <= len(p.sentence_ids) <= 3
    covered = {sid for p in passages for sid in p.sentence_ids}
    assert covered == {s.sentence_id for s in sentences}
    for prev, nxt in zip(passages, passages[1:], strict=False):
        assert prev.sentence_ids[-1] == nxt.sentence_ids[0]  # one-sentence overlap


def test_front_matter_title_and_body_offsets():
    doc = parse_document("x", "---\ntitle: A Title\n---\nFirst sentence. Second.")
    assert doc.title == "A Title"
    sentences, _ = chunk_document(doc, first_sentence_id=0, first_passage_id=0)
    assert [s.text for s in sentences] == ["First sentence.", "Second."]
    assert all(doc.text[s.start : s.end] == s.text for s in sentences)


def test_title_defaults_to_first_sentence(seed_docs):
    assert seed_docs[0].title.startswith("A deal designed to save the NHS more than £1bn")


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "x" * 200])
def test_bad_document_ids_are_refused(bad):
    from qa.errors import BadDocument

    with pytest.raises(BadDocument):
        parse_document(bad, "text")
