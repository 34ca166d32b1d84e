"""Train the span reader (``make train-reader``): MiniLM + a SQuAD 2.0 head, seeded, CPU or CUDA.

The base is the packaged embedder's own transformer (all-MiniLM-L6-v2); ``AutoModelForQuestionAnswering``
adds a fresh start/end head. The word embeddings stay frozen (they are half the parameters), so the
trained difference from the packaged base is the six encoder layers and the head: ~21 MB in fp16, which
is what ships (``qa/reader/model/``) and is overlaid on the packaged base at load time.

Data (see ``../shared/benchmarks/README.md`` for the rules):

- every question of the SQuAD train file (answerable, or unanswerable with the null label);
- the articles of the validation file *except* the last ``--holdout`` ones, whose questions are never
  trained on and are what validation F1, the calibration and every reported score use;
- synthetic negatives derived from answerable training questions: (a) the question paired with the
  other paragraph of its article that shares the most of its words yet lacks the answer — what open
  retrieval hands the reader when it misses — and (b) the question's own paragraph with the sentence
  that holds the answer cut out — the near-miss the articles' own words invite;
- with ``--perturb-rate`` (stage 2 of ``make train-reader``), questions made unanswerable the way SQuAD
  2.0's were: a name, number or qualifier changed to one the paragraph does not contain.

More derivations were measured and not shipped (``eval/README.md``, "Stage 3"): each read the news
sets worse than stage 2. They stay as options for a longer run on a GPU:

- ``--swap-rate``: a name in the question swapped for another name of the same article;
- ``--paraphrase-rate``: answerable questions reworded with near-synonyms from the base's embeddings;
- ``--window-rate`` (tried as a stage 2 redone): questions also given as the index's 3-sentence passages,
  the one holding the answer and one of the same paragraph without it, the shape the reader reads.
- ``--definition-rate`` (tried as 0.3 epoch more on both shipped members, at 6): "Who/What is X?" about the
  definitions the training paragraphs state (appositives, titles, copulas), which SQuAD almost never asks;
  the members learnt to answer them, and read reworded questions and held-out SQuAD worse;
- ``--layer-decay`` (tried with stages 1 and 2 retrained at 0.8): lower layers learn at a smaller rate,
  keeping more of what the base learnt; the seed set gained, SQuAD and the rephrased set lost.

A run checkpoints to ``OUT/checkpoint`` every ``--checkpoint-every`` steps and at each epoch's end; the
same command resumes from there and trains exactly what an unbroken run would (the batch order, dropout
and optimizer state are restored; ``tests/slow/test_train_reader_resume.py``).

Example (the two stages ``make train-reader`` runs, then the export)::

    python -m train.reader --epochs 2.5 --lr 1.5e-4 --out .train/reader
    python -m train.reader --init .train/reader/final --epochs 1 --lr 5e-5 --warmup 0.05 \
        --perturb-rate 0.5 --out .train/reader-stage2
    python -m train.export .train/reader-stage2/final --after .train/reader
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.lang.squad import squad_scores
from train.loop import StepLog, load_checkpoint, optimizer_step, padded, restore, run_record, save_checkpoint

TRAIN_FILE = Path("../shared/benchmarks/squad2-train-partial.json.gz")
DEV_FILE = Path("../shared/benchmarks/squad2-dev-a.json")
_WORD_RE = re.compile(r"\w+")
_SENT_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“(])")
STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been what which who whom whose when "
    "where why how did do does that this these those it its as than into about after before during".split()
)


@dataclass
class Example:
    """One question over one context; ``answers`` are (text, char_start) pairs, empty when unanswerable."""

    qid: str
    title: str
    context: str
    question: str
    answers: list[tuple[str, int]]


def load_squad(path: Path) -> list[list[Example]]:
    """SQuAD 2.0 JSON (optionally gzipped) -> one list of examples per article, in file order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    articles = []
    for article in data:
        rows = []
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else [(a["text"], a["answer_start"]) for a in qa["answers"]]
                rows.append(Example(qa["id"], article["title"], para["context"], qa["question"], answers))
        articles.append(rows)
    return articles


def _words(text: str) -> set[str]:
    return {w for w in _WORD_RE.findall(text.lower()) if w not in STOP}


def synthetic_negatives(articles: list[list[Example]], rng: random.Random, rate: float) -> list[Example]:
    """Unanswerable pairs derived from answerable questions (see the module docstring)."""
    out: list[Example] = []
    for rows in articles:
        contexts = sorted({r.context for r in rows})
        bags = {c: _words(c) for c in contexts}
        for ex in rows:
            if not ex.answers or rng.random() >= rate:
                continue
            q = _words(ex.question)
            if rng.random() < 0.5 and len(contexts) > 1:
                others = [c for c in contexts if c != ex.context and not any(a in c for a, _ in ex.answers)]
                if others:
                    best = max(others, key=lambda c: (len(q & bags[c]), c))
                    out.append(Example(ex.qid + "-otherpara", ex.title, best, ex.question, []))
                    continue
            cut = _cut_answer_sentence(ex)
            if cut is not None:
                out.append(Example(ex.qid + "-cut", ex.title, cut, ex.question, []))
    return out


_NAME_RE = re.compile(r"(?<![\w'’])(?:[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*|\d[\d,.]*)")
_ANTONYMS = {
    "first": "last",
    "last": "first",
    "largest": "smallest",
    "smallest": "largest",
    "most": "least",
    "least": "most",
    "before": "after",
    "after": "before",
    "highest": "lowest",
    "lowest": "highest",
    "earliest": "latest",
    "latest": "earliest",
    "increase": "decrease",
    "decrease": "increase",
    "north": "south",
    "south": "north",
    "east": "west",
    "west": "east",
    "oldest": "newest",
    "newest": "oldest",
    "longest": "shortest",
    "shortest": "longest",
    "won": "lost",
    "lost": "won",
    "begin": "end",
    "start": "end",
    "never": "always",
    "not": "also",
    "can": "cannot",
    "did": "did not",
}


def perturbed_negatives(articles: list[list[Example]], rng: random.Random, rate: float) -> list[Example]:
    """SQuAD 2.0-style unanswerables: an answerable question whose name, number or qualifier is changed
    so that its paragraph no longer answers it ("When did the Normans reach Italy?" -> "... reach
    Sweden?"), the paragraph kept. The new word never occurs in the paragraph; names come from other
    articles, numbers are shifted, qualifiers flipped (first -> last)."""
    names_by_article = [
        sorted({m.group(0) for e in rows for m in _NAME_RE.finditer(e.context) if not m.group(0)[0].isdigit()})
        for rows in articles
    ]
    out: list[Example] = []
    for a, rows in enumerate(articles):
        pool = [
            n
            for b, names in enumerate(names_by_article)
            if b != a
            for n in names[:200]
            if n.split()[0] not in _NOT_NAMES
        ]
        for ex in rows:
            if not ex.answers or rng.random() >= rate:
                continue
            ctx = ex.context.lower()
            first = ex.question.split()[0] if ex.question.split() else ""
            names = [m for m in _NAME_RE.finditer(ex.question) if m.group(0) != first and m.group(0).lower() in ctx]
            words = [m for m in re.finditer(r"\b\w+\b", ex.question) if m.group(0).lower() in _ANTONYMS]
            choices = []
            if names:
                m = rng.choice(names)
                if m.group(0)[0].isdigit():
                    digits = re.sub(r"\D", "", m.group(0))
                    new = str(int(digits) + rng.choice([-3, -2, -1, 1, 2, 3, 10, 100])) if digits else ""
                else:
                    new = rng.choice(pool) if pool else ""
                if new and new.lower() not in ctx:
                    choices.append(ex.question[: m.start()] + new + ex.question[m.end() :])
            if words:
                m = rng.choice(words)
                flip = _ANTONYMS[m.group(0).lower()]
                if flip.lower() not in ctx:
                    choices.append(ex.question[: m.start()] + flip + ex.question[m.end() :])
            if choices:
                out.append(Example(ex.qid + "-perturbed", ex.title, ex.context, rng.choice(choices), []))
    return out


def word_neighbours(tokenizer, embeddings, words: set[str], k: int = 5) -> dict[str, list[str]]:  # noqa: ANN001
    """For each word that is one whole token of the vocabulary, its ``k`` nearest whole-word tokens in the
    base model's input embeddings (cosine), leaving out its own inflections (a shared 4-letter prefix)
    and the qualifiers stage 2 flips: "postponed" -> delayed, ..., "doctor" -> physician, surgeon, ...

    The base's embeddings put near-synonyms side by side; they are what a reader that learnt to answer
    only on exact word overlap fails on (a user says "postponed" where the article says "extended")."""
    import torch

    vocab = tokenizer.get_vocab()
    ids = {w: vocab[w] for w in sorted(words) if w in vocab and w.isalpha() and len(w) > 4 and w not in _ANTONYMS}
    if not ids:
        return {}
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    whole = torch.tensor(
        [t.isalpha() and t.islower() and len(t) > 2 for t in tokenizer.convert_ids_to_tokens(range(len(unit)))]
    )
    sims = unit[list(ids.values())] @ unit.T
    sims[:, ~whole] = -1.0
    out = {}
    for w, row in zip(ids, sims.topk(min(k + 12, len(unit)), dim=1).indices.tolist(), strict=True):
        near = [t for t in tokenizer.convert_ids_to_tokens(row) if t[:4] != w[:4] and t not in _ANTONYMS]
        if near[:k]:
            out[w] = near[:k]
    return out


def paraphrased_positives(
    articles: list[list[Example]], rng: random.Random, rate: float, neighbours: dict[str, list[str]]
) -> list[Example]:
    """Answerable questions reworded away from their paragraph: one or two of the question's words that
    the paragraph also uses are replaced by a near-synonym it does not use (``word_neighbours``), the
    answer kept. Against the stage-2 negatives (a changed *name* or *qualifier* means no answer), these
    teach that a changed ordinary word does not."""
    out: list[Example] = []
    for rows in articles:
        for ex in rows:
            if not ex.answers or rng.random() >= rate:
                continue
            ctx = _words(ex.context)
            slots = [
                m
                for m in re.finditer(r"\b[a-z]+\b", ex.question)
                if m.group(0) in ctx and m.group(0) in neighbours and m.group(0) not in STOP
            ]
            if not slots:
                continue
            question = ex.question
            for m in sorted(rng.sample(slots, min(len(slots), rng.choice([1, 2]))), key=lambda m: -m.start()):
                options = [n for n in neighbours[m.group(0)] if n not in ctx]
                if options:
                    question = question[: m.start()] + rng.choice(options) + question[m.end() :]
            if question != ex.question:
                out.append(Example(ex.qid + "-para", ex.title, ex.context, question, ex.answers))
    return out


def swapped_negatives(articles: list[list[Example]], rng: random.Random, rate: float) -> list[Example]:
    """Harder SQuAD 2.0-style unanswerables: a name in the question swapped for another name *of the same
    article, so the question stays on topic ("What was the founding year of the New York Daily News?" ->
    "... of the Grand Central Terminal?"). The new name is either one the paragraph never mentions, or one
    it mentions outside the sentence that holds the answer (so the fact asked about is not stated of it);
    the paragraph is kept. A swap can occasionally leave the question answerable: label noise."""
    out: list[Example] = []
    for rows in articles:
        article_names = _article_names(rows)
        for ex in rows:
            if not ex.answers or rng.random() >= rate:
                continue
            first = ex.question.split()[0] if ex.question.split() else ""
            ctx = ex.context.lower()
            names = [
                m
                for m in _SWAP_NAME_RE.finditer(ex.question)
                if m.group(0) != first and not m.group(0)[0].isdigit() and m.group(0).lower() in ctx
            ]
            if not names:
                continue
            m = rng.choice(names)
            answer_sentence = _answer_sentence(ex).lower()
            question = ex.question.lower()
            candidates = [
                n
                for n in article_names
                if n.lower() not in question
                and n.lower() not in m.group(0).lower()
                and m.group(0).lower() not in n.lower()
                and n.lower() not in answer_sentence
                and not any(n.lower() in a.lower() for a, _ in ex.answers)
            ]
            if candidates:
                new = rng.choice(candidates)
                out.append(
                    Example(
                        ex.qid + "-swapped",
                        ex.title,
                        ex.context,
                        ex.question[: m.start()] + new + ex.question[m.end() :],
                        [],
                    )
                )
    return out


def _article_names(rows: list[Example]) -> list[str]:
    """Capitalised names used at least twice in the article's paragraphs, mid-sentence (so "However" or
    a sentence's first word is not taken for a name)."""
    counts: dict[str, int] = {}
    for context in sorted({e.context for e in rows}):
        for m in _SWAP_NAME_RE.finditer(context):
            name, before = m.group(0), context[max(0, m.start() - 2) : m.start()]
            if name[0].isdigit() or m.start() == 0 or before.rstrip()[-1:] in (".", "!", "?", '"', "“", "("):
                continue
            if name.split()[0] not in _NOT_NAMES:
                counts[name] = counts.get(name, 0) + 1
    return sorted(n for n, c in counts.items() if c >= 2)


# Whole capitalised words only (unlike _NAME_RE, which stage 2 was trained with: "Frédéric" is not "Fr").
_SWAP_NAME_RE = re.compile(r"(?<![\w'’])[A-Z]\w+(?:\s+[A-Z]\w+)*(?![\w'’])")
_NOT_NAMES = frozenset(("The", "A", "An", "In", "On", "At", "It", "This", "These", "Articles", "However", "During"))


def passage_windows(articles: list[list[Example]], rng: random.Random, rate: float) -> list[Example]:
    """Examples shaped like what the reader reads when it serves: the index's passages (3 sentences,
    one shared with the next, at most 800 characters; ``index.chunking``), not whole paragraphs.

    For a ``rate`` share of the answerable questions: the passage of the paragraph that holds the first
    answer (answerable, offsets shifted), and another passage of it that holds no answer (unanswerable),
    the neighbour that open retrieval hands the reader beside the right one.
    """
    from index.chunking import chunk_document
    from index.documents import Document

    out: list[Example] = []
    for rows in articles:
        for ex in rows:
            if not ex.answers or rng.random() >= rate:
                continue
            _, passages = chunk_document(
                Document(ex.qid, ex.title, ex.context), first_sentence_id=0, first_passage_id=0
            )
            if len(passages) < 2:
                continue
            text, a0 = ex.answers[0]
            holding = [p for p in passages if p.start <= a0 and a0 + len(text) <= p.end]
            if not holding:
                continue
            p = holding[0]
            answers = [(a, s - p.start) for a, s in ex.answers if p.start <= s and s + len(a) <= p.end]
            out.append(Example(ex.qid + "-window", ex.title, p.text, ex.question, answers))
            empty = [q for q in passages if not any(a.lower() in q.text.lower() for a, _ in ex.answers)]
            if empty:
                out.append(Example(ex.qid + "-window-empty", ex.title, rng.choice(empty).text, ex.question, []))
    return out


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for part in _SENT_END_RE.split(text):
        start = text.index(part, pos)
        spans.append((start, start + len(part)))
        pos = start + len(part)
    return spans


def _answer_sentence(ex: Example) -> str:
    """The sentence(s) of the context holding the first answer."""
    text, a0 = ex.answers[0]
    a1 = a0 + len(text)
    return " ".join(ex.context[s:e] for s, e in _sentences(ex.context) if s < a1 and a0 < e)


def _cut_answer_sentence(ex: Example) -> str | None:
    """The context without every sentence that holds an answer; None if too little would remain."""
    spans = _sentences(ex.context)
    keep = [
        ex.context[s:e]
        for s, e in spans
        if not any(s <= a0 < e or s < a0 + len(a) <= e for a, a0 in ex.answers)
        and not any(a.lower() in ex.context[s:e].lower() for a, _ in ex.answers)
    ]
    text = " ".join(keep)
    return text if len(keep) >= 2 and len(text) >= 200 else None


# -- definitional questions ("Who is X?") ----------------------------------------------------------------
# SQuAD's questions almost never ask what or who something is (5 of the 5,478 training questions), so the
# reader learnt to refuse "Who is X?" even where the passage says who X is. These patterns find the
# definitions that encyclopaedic and news prose state in passing, to ask about them.
_CAP = r"[A-Z][\w.'’-]*"
_DEF_NAME = rf"{_CAP}(?:\s+(?:{_CAP}|of|de|the|von|van|and)){{0,4}}(?<![\s.])"
_DEF_ROLES = (
    "secretary minister president director chairman chairwoman executive chief leader spokesman spokeswoman "
    "spokesperson manager editor founder co-founder governor senator general professor singer rapper "
    "songwriter producer actor actress writer author novelist composer king queen prince princess emperor "
    "empress pope bishop archbishop mayor judge officer captain coach player scientist engineer inventor "
    "architect philosopher poet painter economist historian physicist chemist mathematician explorer "
    "lead head member commander admiral dancer musician guitarist drummer designer entrepreneur"
).split()
_ROLE = rf"(?:{'|'.join(sorted(set(_DEF_ROLES), key=len, reverse=True))})"
# "Frank Shuman, a U.S. inventor, ..." / "Jan Vos, the firm’s head of research, ..."
_APPOSITIVE_RE = re.compile(
    rf"(?<![\w'’])(?P<name>{_DEF_NAME}), (?P<def>(?:a|an|the|{_CAP}['’]s) [^,;:()“”\"]{{2,80}}?)(?=[,;:])"
)
# "finance minister Karl Berg" / "chief executive Mia Holt"
_TITLE_RE = re.compile(
    rf"(?<![\w'’])(?P<def>(?:[a-z][\w-]* ){{0,1}}{_ROLE}(?: of (?!the\b|a\b|an\b)[a-z]+)?) (?P<name>[A-Z][a-z]+(?: [A-Z][a-z]+){{1,2}})(?![\w'’])"
)
# "The World Solar Challenge is a biannual solar-powered car race ..." (at a sentence's start)
_COPULA_RE = re.compile(
    rf"^(?P<name>{_DEF_NAME})(?: \([^)]*\))? (?P<verb>is|was|are|were) (?P<def>(?:a|an|the) [^,.;:()“”\"]{{3,80}}?)"
    r"(?=[,.;:]| (?:that|which|who|whose|where|when)\b)"
)
_NOT_DEFINED = frozenset(
    "The A An In On At It Its This These Those However He She They We There Here Today Now Then Also Although "
    "When While Despite Following According As Of To Upon Under After Before During Since By For From With "
    "Within Without Throughout Among Between Unlike Like Meanwhile Thus Instead Later Earlier".split()
)
_DEF_VERBS = frozenset(
    "is was are were be been being has have had would will could can may might must shall should never not "
    "did does do which who whom whose that where when".split()
)
_MODIFIER_STOP = STOP | frozenset("including under by as and among also then between".split())


def _plausible(name: str, definition: str, kind: str) -> bool:
    """Filters the patterns' false friends: an introductory phrase ("In Italy, the Normans ..."), a list
    ("Singapore, the United States and ..."), a clause ("the composer never named ...")."""
    words = definition.split()
    if name.split()[0] in _NOT_DEFINED or " and " in name or len(words) > 12 or name.lower() in definition.lower():
        return False
    if any(w.lower().strip("’'") in _DEF_VERBS for w in words):
        return False
    if kind == "title":
        role = next((i for i, w in enumerate(words) if re.fullmatch(_ROLE, w)), len(words) - 1)
        return words[role] not in ("general", "lead", "head", "member") and all(
            w not in _MODIFIER_STOP and not w.endswith(("ed", "ing", "ly")) for w in words[:role]
        )
    if words[0] in ("a", "an", "the") and (len(words) < 3 or words[1][:1].isupper()):
        return False
    return " and " not in definition or kind == "copula"


def definitions(context: str) -> list[tuple[str, str, int, str]]:
    """(name, definition, definition's char offset, verb) for each definition the patterns find.

    Example::

        >>> definitions("The plan is backed by finance minister Karl Berg.")
        [('Karl Berg', 'finance minister', 22, 'is')]
    """
    found = []
    for s, e in _sentences(context):
        sentence = context[s:e]
        past = bool(re.search(r"\b(?:was|were|had|did)\b", sentence))
        for m in _APPOSITIVE_RE.finditer(sentence):
            if m.start() == 0 and " " not in m["name"]:  # "Additionally, the ..." opens a sentence
                continue
            found.append((m["name"], m["def"], s + m.start("def"), "was" if past else "is", "appositive"))
        for m in _TITLE_RE.finditer(sentence):
            found.append((m["name"], m["def"], s + m.start("def"), "was" if past else "is", "title"))
        m = _COPULA_RE.match(sentence)
        if m:
            verb = "is" if m["verb"] in ("is", "are") else "was"
            found.append((m["name"], m["def"], s + m.start("def"), verb, "copula"))
    return [(n, d, o, v) for n, d, o, v, kind in found if _plausible(n, d, kind)]


def definition_questions(articles: list[list[Example]], rng: random.Random, rate: float) -> list[Example]:
    """ "Who is X?" / "What is X?" about the definitions each paragraph states (the answer: the definition),
    each asked ``rate`` times on average (there are few: ~125 in the training articles), and for each, the
    same question over another paragraph of the article that never names X (unanswerable: what open
    retrieval hands the reader when it misses)."""
    out: list[Example] = []
    for rows in articles:
        contexts = sorted({e.context for e in rows})
        title = rows[0].title if rows else ""
        for c, context in enumerate(contexts):
            for n, (name, definition, offset, verb) in enumerate(definitions(context)):
                copies = int(rate) + (rng.random() < rate - int(rate))
                who = re.search(rf"\b{_ROLE}s?\b", definition) is not None
                question = f"{'Who' if who else 'What'} {verb} {name}?"
                others = [o for o in contexts if name.lower() not in o.lower()]
                for k in range(copies):
                    qid = f"def-{title}-{c}-{n}-{k}"
                    out.append(Example(qid, title, context, question, [(definition, offset)]))
                    if others:
                        out.append(Example(qid + "-elsewhere", title, rng.choice(others), question, []))
    return out


# -- features ---------------------------------------------------------------------------------------
def encode(tokenizer, examples: list[Example], max_length: int, stride: int, *, train: bool) -> list[dict]:  # noqa: ANN001
    """Tokenise (question, context) into windows; label each with token start/end (0 = the null answer)."""
    enc = tokenizer(
        [e.question.lstrip() for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    feats = []
    for i, ids in enumerate(enc["input_ids"]):
        ex_idx = enc["overflow_to_sample_mapping"][i]
        ex = examples[ex_idx]
        seq = enc.sequence_ids(i)
        offsets = [o if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
        start = end = 0
        if ex.answers:
            text, a0 = ex.answers[0]
            a1 = a0 + len(text)
            ctx = [k for k, s in enumerate(seq) if s == 1]
            if offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                start = next(k for k in ctx if offsets[k][1] > a0)
                end = next(k for k in reversed(ctx) if offsets[k][0] < a1)
        feats.append(
            {
                "input_ids": ids,
                "token_type_ids": enc["token_type_ids"][i] if "token_type_ids" in enc else [0] * len(ids),
                "start": start,
                "end": end,
                "example": ex_idx,
                "offsets": None if train else offsets,
            }
        )
    return feats


def param_groups(model, lr: float, layer_decay: float = 1.0, weight_decay: float = 0.01) -> list[dict]:  # noqa: ANN001
    """AdamW groups for the trainable parameters: layer ``i`` of ``L`` learns at ``lr * layer_decay**(L-1-i)``.

    Layer-wise learning-rate decay (ULMFiT, ELECTRA) moves the lower layers, which hold most of what the
    base learnt, less than the top ones and the head. Matrices are decayed, biases and norms not.

    Example: with 6 layers and ``layer_decay=0.5`` the head and layer 5 learn at ``lr``, layer 4 at
    ``lr / 2``, layer 0 at ``lr / 32``; ``layer_decay=1.0`` gives everything ``lr`` (two groups).
    """
    n_layers = model.config.num_hidden_layers
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        match = re.search(r"\.layer\.(\d+)\.", name)
        depth = n_layers - 1 - int(match.group(1)) if match else (n_layers if ".embeddings." in name else 0)
        key = (lr * layer_decay**depth, weight_decay if p.ndim > 1 else 0.0)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]


def batches(feats: list[dict], batch_size: int, rng: random.Random | None):
    """Length-grouped batches (little padding); shuffled by ``rng`` when given."""
    for group in batch_groups(feats, batch_size, rng):
        yield group, collate([feats[j] for j in group])


def batch_groups(feats: list[dict], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """The feature indices of each batch of one pass, in order (what `batches` collates)."""
    order = list(range(len(feats)))
    if rng is not None:
        rng.shuffle(order)
        chunk = batch_size * 50
        order = [
            i
            for c in range(0, len(order), chunk)
            for i in sorted(order[c : c + chunk], key=lambda j: len(feats[j]["input_ids"]))
        ]
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(groups)
    else:
        order.sort(key=lambda j: len(feats[j]["input_ids"]))
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return groups


def collate(rows: list[dict]) -> dict:
    import torch

    return {
        **padded(rows),
        "start_positions": torch.tensor([r["start"] for r in rows]),
        "end_positions": torch.tensor([r["end"] for r in rows]),
    }


# -- validation -------------------------------------------------------------------------------------
# Held-out F1 while training: the reader's margin rule (answer when span score - no-answer score >= t) at
# t = 0 and at the t that scores best on the validation questions. What ships decides with
# ``qa.decide`` instead; these only track training.
def _answered_f1(r: dict) -> float:
    """SQuAD F1 of answering the row with its span (0 for an unanswerable question), computed once."""
    span = r["evidence"].get("span") or ""
    key = ("_f1", span)
    if r.get("_f1_key") != key:
        r["_f1_key"], r["_f1"] = key, (0.0 if r["impossible"] else squad_scores(span, r["gold"])[1])
    return r["_f1"]


def score_at(rows: Sequence[dict], t: float) -> dict[str, float]:
    """SQuAD 2.0 scores (in %) when answering the rows whose margin is at least ``t``.

    Abstaining scores 1 on an unanswerable question and 0 on an answerable one (official rules)."""
    has_f1, no_ok, answered = [], [], []
    for r in rows:
        margin = r["evidence"].get("margin")
        answers = margin is not None and margin >= t and bool(r["evidence"].get("span"))
        answered.append(answers)
        if r["impossible"]:
            no_ok.append(0.0 if answers else 1.0)
        else:
            has_f1.append(_answered_f1(r) if answers else 0.0)
    mean = lambda xs: round(100 * sum(xs) / len(xs), 2) if xs else 0.0  # noqa: E731
    return {"f1": mean(has_f1 + no_ok), "has_f1": mean(has_f1), "noans": mean(no_ok), "answered": mean(answered)}


def candidates(rows: Sequence[dict]) -> list[float]:
    margins = sorted({r["evidence"]["margin"] for r in rows if r["evidence"].get("margin") is not None})
    mids = [(a + b) / 2 for a, b in zip(margins, margins[1:], strict=False)]
    return [margins[0] - 1] + mids[:: max(1, len(mids) // 400)] + [margins[-1] + 1] if margins else [0.0]


def margin_auc(rows: Sequence[dict]) -> float | None:
    """ROC AUC of the margin separating answerable from unanswerable rows (no span: lowest); None without both.

    Example: margins 3 and -1 on answerable rows, 0 on an unanswerable one -> 0.5
    """
    from eval.metrics import separation_auc

    margin = lambda r: r["evidence"]["margin"] if r["evidence"].get("margin") is not None else float("-inf")  # noqa: E731
    auc = separation_auc([margin(r) for r in rows if not r["impossible"]], [margin(r) for r in rows if r["impossible"]])
    return None if auc is None else round(auc, 4)


MIN_HAS_F1 = 45.0


def fit_margin(rows: Sequence[dict], min_has_f1: float = MIN_HAS_F1) -> tuple[float, dict]:
    """The margin with the best overall F1 among those that keep HasAns F1 >= ``min_has_f1``.

    Why the floor: with SQuAD 2.0's adversarial unanswerables, plain F1 is maximised by abstaining on
    most questions (see the curve), which beats the null baseline by saying nothing. The product must
    answer, so the margin may not trade answerable questions below the floor (0 disables it).
    """
    scored = [(score_at(rows, t), t) for t in candidates(rows)]
    allowed = [(s, t) for s, t in scored if s["has_f1"] >= min_has_f1] or scored
    best, t = max(allowed, key=lambda st: (st[0]["f1"], -abs(st[1])))
    return t, best


def predict(model, tokenizer, examples: list[Example], max_length: int, stride: int, batch_size: int, device: str):  # noqa: ANN001
    """One `Reading` per example, post-processed exactly as the served reader does."""
    import torch

    from qa.reader.reader import readings_from_windows

    feats = encode(tokenizer, examples, max_length, stride, train=False)
    windows = []
    model.eval()
    with torch.inference_mode():
        for group, batch in batches(feats, batch_size, None):
            inputs = {k: v.to(device) for k, v in batch.items() if k in tokenizer.model_input_names}
            out = model(**inputs)
            starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
            for row, j in enumerate(group):
                n = len(feats[j]["input_ids"])
                windows.append((feats[j]["example"], starts[row, :n], ends[row, :n], feats[j]["offsets"]))
    model.train()
    return readings_from_windows(windows, [e.context for e in examples])


def span_loss(start_logits, end_logits, starts, ends):  # noqa: ANN001, ANN201 - torch tensors
    """The span head's loss as ``transformers`` computes it: the mean of the start and end cross-entropies,
    a position past the window ignored."""
    import torch

    ignored = start_logits.size(1)
    ce = torch.nn.CrossEntropyLoss(ignore_index=ignored)
    starts, ends = starts.clamp(0, ignored), ends.clamp(0, ignored)
    return (ce(start_logits.float(), starts) + ce(end_logits.float(), ends)) / 2


def cached_span_loss(model, cache, feats: list[dict], part: list[int], frozen: int, device: str):  # noqa: ANN001, ANN201
    """`span_loss` of features ``part`` read from their cached frozen prefix (``--train-top``): only the
    layers above ``frozen`` and the head run."""
    import torch

    from train.mpnet import top_span_logits

    states, mask = cache.batch(part)
    start, end = top_span_logits(model, states.to(device), mask.to(device), frozen)
    starts = torch.tensor([feats[j]["start"] for j in part], device=device)
    ends = torch.tensor([feats[j]["end"] for j in part], device=device)
    return span_loss(start, end, starts, ends)


def base_path(base: str | None) -> Path:
    """The base transformer's folder: ``None`` the packaged MiniLM, ``"mpnet"`` all-mpnet-base-v2 from its
    part-wheels (`index.embedder.packaged_mpnet_path`), else the folder named."""
    if base is None:
        from index.embedder import packaged_embedder_path

        return Path(packaged_embedder_path())
    if base == "mpnet":
        from index.embedder import packaged_mpnet_path

        return packaged_mpnet_path()
    return Path(base)


def plain_model(model):  # noqa: ANN001, ANN201
    """What an epoch or the end saves: ``model`` itself, or with LoRA a plain copy, its updates folded in."""
    from train.lora import has_lora, merged

    return merged(model) if has_lora(model) else model


def validation_rows(examples: list[Example], readings) -> list[dict]:  # noqa: ANN001
    """Examples and their readings in the rows `score_at` scores (margin = span - null)."""
    return [
        {
            "article": ex.title,
            "impossible": not ex.answers,
            "gold": [a for a, _ in ex.answers],
            "evidence": {"span": r.span, "margin": r.margin if r.span else None},
        }
        for ex, r in zip(examples, readings, strict=True)
    ]


# -- main -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-file", type=Path, default=TRAIN_FILE)
    parser.add_argument("--dev-file", type=Path, default=DEV_FILE)
    parser.add_argument("--holdout", type=int, default=3, help="last N dev articles never trained on (≥ 3)")
    parser.add_argument("--out", type=Path, default=Path(".train/reader"))
    parser.add_argument(
        "--base",
        default=None,
        help='base transformer dir, or "mpnet" (all-mpnet-base-v2); default: the packaged MiniLM',
    )
    parser.add_argument(
        "--lora", type=int, default=0, help="train rank-N LoRA updates of a frozen base (train.lora); 0: fine-tune all"
    )
    parser.add_argument(
        "--train-top",
        type=int,
        default=0,
        help="mpnet only: train the top N layers (or their LoRA updates) on the frozen rest's output, "
        "computed once into OUT/prefix-cache (train.mpnet.PrefixCache); 0: every layer",
    )
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--micro-batch",
        type=int,
        default=0,
        help="examples per forward pass, gradients summed to --batch-size (memory only; 0: the whole batch)",
    )
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--negative-rate", type=float, default=0.45)
    parser.add_argument(
        "--perturb-rate", type=float, default=0.0, help="share of answerable questions perturbed into unanswerable ones"
    )
    parser.add_argument(
        "--swap-rate", type=float, default=0.0, help="share of answerable questions given another name of their article"
    )
    parser.add_argument(
        "--paraphrase-rate", type=float, default=0.0, help="share of answerable questions reworded with near-synonyms"
    )
    parser.add_argument(
        "--window-rate", type=float, default=0.0, help="share of answerable questions also given as index passages"
    )
    parser.add_argument(
        "--definition-rate",
        type=float,
        default=0.0,
        help='times each definition the training paragraphs state is asked as "Who/What is X?" (0: none)',
    )
    parser.add_argument("--init", type=Path, help="continue from this checkpoint (a folder this script wrote)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        help="steps between checkpoints in OUT/checkpoint; the same command resumes from the last one",
    )
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument(
        "--layer-decay", type=float, default=1.0, help="layer-wise learning-rate decay (1.0: one rate for all)"
    )
    parser.add_argument("--val-size", type=int, default=400, help="held-out questions scored each epoch")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--limit", type=int, default=0, help="train on the first N features only (smoke runs)")
    args = parser.parse_args(argv)
    if args.checkpoint_every < 1:
        parser.error("--checkpoint-every must be at least 1")
    if args.holdout < 3:
        parser.error("--holdout must be at least 3 whole articles (benchmarks README)")
    if args.train_top < 0:
        parser.error("--train-top must be 0 (every layer) or a number of top layers")
    if args.train_top and args.base != "mpnet":
        parser.error("--train-top needs --base mpnet (its frozen prefix is cached as train.mpnet does)")

    import numpy as np
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    from train.lora import add_lora

    base = base_path(args.base)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForQuestionAnswering.from_pretrained(str(args.init or base)).to(args.device)
    for p in model.base_model.embeddings.parameters():
        p.requires_grad = False
    if args.lora:
        add_lora(model, args.lora)
    frozen = 0
    if args.train_top:
        from train.mpnet import freeze_reader_below

        frozen = freeze_reader_below(model, args.train_top)
    model_inputs = set(tokenizer.model_input_names)  # MPNet takes no token_type_ids
    micro = args.micro_batch or args.batch_size

    train_articles = load_squad(args.train_file)
    dev_articles = load_squad(args.dev_file)
    dev_train, held = dev_articles[: -args.holdout], dev_articles[-args.holdout :]
    examples = [e for a in train_articles + dev_train for e in a]
    negatives = synthetic_negatives(train_articles, rng, args.negative_rate)
    perturbed = perturbed_negatives(train_articles + dev_train, rng, args.perturb_rate) if args.perturb_rate else []
    swapped = swapped_negatives(train_articles + dev_train, rng, args.swap_rate) if args.swap_rate else []
    paraphrased = []
    if args.paraphrase_rate:
        question_words = {
            w for a in train_articles + dev_train for e in a for w in _WORD_RE.findall(e.question.lower())
        }
        neighbours = word_neighbours(
            tokenizer, model.base_model.embeddings.word_embeddings.weight.detach(), question_words
        )
        paraphrased = paraphrased_positives(train_articles + dev_train, rng, args.paraphrase_rate, neighbours)
    windows = passage_windows(train_articles + dev_train, rng, args.window_rate) if args.window_rate else []
    defined = (
        definition_questions(train_articles + dev_train, rng, args.definition_rate) if args.definition_rate else []
    )
    examples += negatives + perturbed + swapped + paraphrased + windows + defined
    held_examples = [e for a in held for e in a]
    val = rng.sample(held_examples, min(args.val_size, len(held_examples)))
    feats = encode(tokenizer, examples, args.max_length, args.stride, train=True)
    if args.limit:
        feats = feats[: args.limit]
    stats = {
        "train_questions": sum(len(a) for a in train_articles),
        "dev_trained_questions": sum(len(a) for a in dev_train),
        "dev_trained_articles": [a[0].title for a in dev_train],
        "heldout_articles": [a[0].title for a in held],
        "synthetic_negatives": len(negatives),
        "perturbed_negatives": len(perturbed),
        "swapped_negatives": len(swapped),
        "paraphrased_positives": len(paraphrased),
        "passage_windows": len(windows),
        "definition_questions": len(defined),
        "init": args.init.name if args.init else "packaged base",
        "unanswerable_examples": sum(not e.answers for e in examples),
        "features": len(feats),
    }
    print(json.dumps(stats), file=sys.stderr)
    cache = None
    if frozen:
        from train.mpnet import PrefixCache, cache_fingerprint

        # The frozen prefix is the base's, or --init's where that is not the packaged base.
        origin = f"{args.base}:{args.init.resolve() if args.init else 'packaged'}"
        cache = PrefixCache(
            args.out / "prefix-cache",
            cache_fingerprint(origin, frozen, args.bf16, feats),
            [len(f["input_ids"]) for f in feats],
            hidden=model.config.hidden_size,
        )
        built = cache.fill(model, feats, frozen, pad_id=tokenizer.pad_token_id, device=args.device, bf16=args.bf16)
        stats["prefix_cache"] = {"frozen_layers": frozen, **built}
        print(json.dumps({"prefix_cache": stats["prefix_cache"]}), file=sys.stderr)

    steps_per_epoch = math.ceil(len(feats) / args.batch_size)
    total = int(steps_per_epoch * args.epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, args.lr, args.layer_decay, weight_decay=0.01), lr=args.lr)
    warmup = max(1, int(args.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    ckpt = args.out / "checkpoint" / "state.pt"
    # What a checkpoint was trained with: a run under other arguments or data never resumes from it.
    recipe = {
        **{
            k: str(v)
            for k, v in sorted(vars(args).items())
            if k not in ("checkpoint_every", "device", "out", "lora", "micro_batch", "train_top")
        },
        **({"lora": str(args.lora)} if args.lora else {}),  # (absent from recipes saved before --lora existed)
        **({"train_top": str(args.train_top)} if args.train_top else {}),
        "features": len(feats),
    }
    step, done, elapsed = 0, 0, 0.0  # steps taken, epochs finished (validated), seconds before a resume
    if ckpt.is_file():  # resume: the same data, batch order and dropout, so it trains what an unbroken run would
        state = load_checkpoint(ckpt)
        saved = state.get("recipe") or {}
        if saved != recipe:
            differ = sorted(k for k in recipe.keys() | saved.keys() if recipe.get(k) != saved.get(k))
            raise SystemExit(
                f"{ckpt} was trained with other arguments or data ({', '.join(differ)}): "
                f"delete {ckpt.parent} to start again, or run with the arguments it was started with"
            )
        restore(state, model, opt, sched)
        step, done, elapsed = state["step"], state["epochs_done"], state["elapsed_s"]
        rng.setstate(state["epoch_rng"])
        _keep_log_until(args.out / "train_log.jsonl", step, done)
        print(f"resuming at step {step} of {total}", file=sys.stderr)
    log = (args.out / "train_log.jsonl").open("a" if step else "w", encoding="utf-8")
    try:
        t0 = time.time() - elapsed
        model.train()
        bar = tqdm(total=total, initial=step, desc="train reader", unit="step", file=sys.stderr, mininterval=10)

        def checkpoint(epoch_rng: object) -> None:
            """Everything a resumed run needs; ``epoch_rng``: the shuffling state the current epoch began with."""
            save_checkpoint(ckpt, model, opt, sched, step, t0, epochs_done=done, epoch_rng=epoch_rng, recipe=recipe)

        while step < total:
            epoch_rng = rng.getstate()
            steps = StepLog(log, bar, steps_per_epoch, t0)
            for group in batch_groups(feats, args.batch_size, rng)[step - done * steps_per_epoch :]:
                # A batch in micro-batches (each loss weighted by its share), so a large base fits in memory.
                parts = [group[i : i + micro] for i in range(0, len(group), micro)]
                value = 0.0
                for k, part in enumerate(parts):
                    with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                        if cache is not None:
                            loss = cached_span_loss(model, cache, feats, part, frozen, args.device)
                        else:
                            batch = {
                                key: v.to(args.device)
                                for key, v in collate([feats[j] for j in part]).items()
                                if key in model_inputs or key.endswith("_positions")
                            }
                            loss = model(**batch).loss
                        loss = loss * (len(part) / len(group))
                    if k < len(parts) - 1:
                        loss.backward()
                        value += float(loss.item())
                value += optimizer_step(loss, params, opt, sched)
                step += 1
                steps.record(step, value, max(sched.get_last_lr()))
                if step >= total:
                    break
                if step % args.checkpoint_every == 0:
                    checkpoint(epoch_rng)
            done += 1
            rows = validation_rows(val, predict(model, tokenizer, val, args.max_length, args.stride, 64, args.device))
            margin, tuned = fit_margin(rows, min_has_f1=0.0)
            row = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 3),
                "val_at_0": score_at(rows, 0.0),
                "val_forced_has_f1": score_at(rows, float("-inf"))["has_f1"],
                "val_margin_auc": margin_auc(rows),
                "val_tuned": tuned,
                "val_margin": round(margin, 3),
                "elapsed_s": round(time.time() - t0, 1),
            }
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps(row), file=sys.stderr, flush=True)
            plain_model(model).save_pretrained(args.out / f"epoch{done}")
            tokenizer.save_pretrained(args.out / f"epoch{done}")
            # At each epoch's end, the last too: a finished stage run again with its arguments only re-saves it.
            checkpoint(rng.getstate())
    finally:
        log.close()
    bar.close()
    plain_model(model).save_pretrained(args.out / "final")
    tokenizer.save_pretrained(args.out / "final")
    meta = {
        **stats,
        **{k: v for k, v in vars(args).items() if k not in ("out", "base", "train_file", "dev_file", "init")},
        "train_file": args.train_file.name,
        "dev_file": args.dev_file.name,
        **run_record(step, t0, args.device),
    }
    (args.out / "train_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return 0


def _keep_log_until(path: Path, step: int, epochs_done: int) -> None:
    """Drop the log rows a resumed run will write again: step rows past ``step`` and validation rows past
    the first ``epochs_done``. (The first step row after a resume averages only the steps since it.)"""
    if not path.is_file():
        return
    kept, validated = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "val_at_0" in row:
            validated += 1
            if validated > epochs_done:
                continue
        elif row.get("step", 0) > step:
            continue
        kept.append(line + "\n")
    path.write_text("".join(kept), encoding="utf-8")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    raise SystemExit(main())
