"""The online path, one stage after another:

    parse (qa.question) -> retrieve (qa.retrieve) -> read (qa.reader) -> cite (qa.citations)
    -> phrase (qa.generate) -> verify (qa.verify) -> Answer

The trained reader picks the answer span across the top passages and decides whether they answer at
all (its no-answer score against the best span, with a margin calibrated on held-out SQuAD 2.0
articles). The generator only phrases the reader's span; its sentence is kept when it states the span
and passes verification, else the answer is the span and the verified quote it came from.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from index.chunking import Passage
from index.documents import Document
from index.embedder import Embedder, SentenceTransformerEmbedder
from index.store import IndexData, load_index
from qa.citations import citation_is_valid, compose, make_citation, parse_markers, strip_markers
from qa.decide.decision import Decider, Judgement, fake_decider
from qa.decide.features import Candidate
from qa.decide.verifier import verifier_input
from qa.errors import BadQuestion, BadRequest, Cancelled, DocumentNotFound, GeneratorError, ModelNotFound, QAError
from qa.generate import GenerationRow, Generator, build_messages, clean_generation, generate_many
from qa.lang.attribution import attributed_lead
from qa.lang.injection import looks_like_instruction
from qa.lang.text import is_blank
from qa.question import Question, parse_question
from qa.reader.reader import Reader, Reading
from qa.retrieve import Retriever
from qa.types import Answer, AnswerMode, Citation, Hit
from qa.verify import early_reject, states_value, verify_answer

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("qa")


@dataclass(frozen=True)
class PipelineOptions:
    max_question_chars: int = 1000
    default_top_k: int = 5
    max_top_k: int = 20
    read_passages: int = 3  # the reader reads this many of the best retrieved passages
    max_new_tokens: int = 32
    max_citations: int = 2
    dense_nprobe: int | None = None  # IVF lists searched; None: the index manifest's

    @classmethod
    def from_settings(cls, settings) -> PipelineOptions:  # noqa: ANN001 - a qa.config.Settings
        """The options a `Settings` names (every entry point builds them here, so none drops one)."""
        return cls(
            max_question_chars=settings.max_question_chars,
            default_top_k=settings.default_top_k,
            max_top_k=settings.max_top_k,
            read_passages=settings.reader_passages or PipelineOptions.read_passages,
            max_new_tokens=settings.max_new_tokens,
            dense_nprobe=settings.dense_nprobe,
        )


def check_question(question: str, top_k: int | None, options: PipelineOptions) -> tuple[str, int]:
    """Validate the inputs against ``options``; raise `BadQuestion` / `BadRequest` with the fix.

    Example: check_question("  How much? ", None, PipelineOptions()) -> ("How much?", 5)
    """
    if not isinstance(question, str):
        raise BadQuestion(f"question must be a string, got {type(question).__name__}")
    cleaned = question.strip()
    if is_blank(question):
        raise BadQuestion("question is empty; send a non-blank question")
    if len(cleaned) > options.max_question_chars:
        raise BadQuestion(f"question is {len(cleaned)} characters; the limit is {options.max_question_chars}")
    k = options.default_top_k if top_k is None else top_k
    if not 1 <= k <= options.max_top_k:
        raise BadRequest(f"top_k must be between 1 and {options.max_top_k}; got {k}")
    return cleaned, k


LOOSE_REASON = "loosely worded: the quote gives this figure or name another party or role than the question does"


def loose_answer(quotes: Sequence[str]) -> str:
    """The answer to a loosely worded question: what the quotes state, in their own words, so that whose the
    figure is comes from the article and never from the question's wording.

    Example: loose_answer(["The NHS will save £1bn from CSC's contract."])
      -> "The articles put it differently. “The NHS will save £1bn from CSC's contract.” [1]"
    """
    return "The articles put it differently. " + compose(quotes, None)


def _abstain_text(reason: str) -> str:
    return f"The articles do not say: {reason}. The closest passages are listed for reference."


@dataclass(frozen=True)
class Job:
    """One question as `Pipeline.ask_batch` takes it (the arguments of `Pipeline.ask`)."""

    question: str
    top_k: int | None = None
    history: Sequence[str] = ()
    max_new_tokens: int | None = None
    cancel: threading.Event | None = None


@dataclass
class _Row:
    """A job's state as it goes through the stages of one batch."""

    i: int
    job: Job
    text: str
    k: int
    q: Question = None  # type: ignore[assignment]
    hits: list[Hit] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    citations: tuple[Citation, ...] = ()
    span: str = ""
    loose: bool = False  # the verifier reads the question as giving a party of the quote another role
    lead: str | None = None  # then the quote's own words saying whose the figure is (qa.lang.attribution)

    @property
    def shown(self) -> tuple[Hit, ...]:
        return tuple(self.hits[: self.k])


@dataclass(frozen=True)
class _Found:
    """The reader's answer, located in the corpus."""

    reading: Reading
    hit: Hit
    doc_start: int
    doc_end: int
    sentences: tuple[tuple[int, int], ...]  # doc offsets of the sentence(s) holding the span
    candidate: Candidate | None = None  # what the decision reads of it


def count_tokens(text: str, tokenizer=None) -> int:  # noqa: ANN001 - a Hugging Face tokenizer
    """Tokens of ``text`` by ``tokenizer``, or word pieces without one.

    Example: count_tokens("How much, exactly?") -> 5
    """
    if tokenizer is not None:
        return len(tokenizer.encode(text, add_special_tokens=False))
    return len(re.findall(r"\w+|[^\w\s]", text))


class IndexedDocuments:
    """The documents of the loaded index (``self.data``), as the routes read them: shared by `Pipeline`
    and the Ray ingress's `api.cluster.ClusterFront`."""

    data: IndexData

    @property
    def documents(self) -> dict[str, Document]:
        return self.data.documents

    def document(self, doc_id: str) -> Document:
        try:
            return self.data.documents[doc_id]
        except KeyError:
            raise DocumentNotFound(f"no document with id {doc_id!r}; GET /v1/documents lists the ids") from None


class Pipeline(IndexedDocuments):
    """Answers questions over one loaded index. Thread-safe: model calls are serialised by a lock."""

    def __init__(
        self,
        data: IndexData,
        embedder: Embedder,
        generator: Generator | None,
        options: PipelineOptions = PipelineOptions(),
        *,
        reader: Reader,
        decider: Decider | None = None,
    ) -> None:
        self.data = data
        self.embedder = embedder
        self.generator = generator
        self.reader = reader
        # Without a trained decider (fast tests), the reader's margin alone decides, at its threshold.
        self.decider = decider if decider is not None else fake_decider(getattr(reader, "threshold", 0.0))
        self.options = options
        self.retriever = Retriever(data, embedder, nprobe=options.dense_nprobe)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings,  # noqa: ANN001 - a qa.config.Settings
        progress: Callable[[str], None] | None = None,
        *,
        index_for: Callable[[Embedder], Path] | None = None,
        decide: bool = True,
    ) -> Pipeline:
        """Load the embedder, the index, the reader and the generator the settings name (heavy: seconds).

        ``index_for(embedder)`` gives another index folder (it may build it first), for the eval-only
        corpora (SQuAD, extra documents); default: ``settings.index_dir``. ``decide=False`` skips the trained
        decision (for tools that read the candidates it would judge: ``train/candidates.py``)."""
        from qa.decide.decision import make_decider
        from qa.generate import make_generator
        from qa.reader.reader import make_reader

        _set_threads(settings.torch_threads, settings.faiss_threads)
        _check_device(settings.device)
        embedder = SentenceTransformerEmbedder(
            Path(settings.embedder_path) if settings.embedder_path else None, device=settings.device
        )
        embedder.warm_up()
        data = load_index(index_for(embedder) if index_for else Path(settings.index_dir), embedder)
        reader = make_reader(settings)
        decider = make_decider(settings) if decide else None
        generator = make_generator(settings, progress)
        options = PipelineOptions.from_settings(settings)
        if settings.reader_passages is None and decider is not None:  # read what the decision was fitted on
            options = replace(options, read_passages=decider.passages)
        return cls(data, embedder, generator, options, reader=reader, decider=decider)

    def with_data(self, data: IndexData, rows_from: np.ndarray | None = None) -> Pipeline:
        """The same models over another index (documents added or removed). When ``data`` is a refresh
        of this pipeline's index, ``rows_from`` (its `index.changes.Changes.rows_from`) lets the
        retriever be updated instead of rebuilt (`qa.retrieve.Retriever.updated`)."""
        new = object.__new__(Pipeline)
        new.__dict__.update(self.__dict__)
        new.data = data
        new.retriever = (
            Retriever(data, self.embedder, nprobe=self.options.dense_nprobe)
            if rows_from is None
            else self.retriever.updated(data, rows_from)
        )
        new._lock = threading.Lock()
        return new

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the generator's tokenizer when it has one, else word pieces."""
        return count_tokens(text, getattr(self.generator, "tokenizer", None))

    # -- answering -------------------------------------------------------------------------------
    def check_question(self, question: str, top_k: int | None) -> tuple[str, int]:
        """Validate the inputs; raise `BadQuestion` / `BadRequest` with the fix (`check_question`)."""
        return check_question(question, top_k, self.options)

    def parse(self, question: str, history: Sequence[str] = ()) -> Question:
        return parse_question(question, history, self.retriever.correct)

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        history: Sequence[str] = (),
        max_new_tokens: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer ``question``; ``history`` holds earlier user turns, oldest first, for follow-ups."""
        result = self.ask_batch([Job(question, top_k, tuple(history), max_new_tokens, cancel)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def ask_batch(self, jobs: Sequence[Job]) -> list[Answer | QAError]:
        """Answer several questions together: one embedding batch, one reading batch, one generation batch.

        Each job gets its own `Answer` or its own error (a bad question, a cancelled request) and the
        others go on; a cancelled job stops generating within one decoding step. Batching does not change
        an answer: ``tests/slow/test_batching.py`` compares every eval question asked alone and batched.
        """
        results: list[Answer | QAError | None] = [None] * len(jobs)
        rows = []
        for i, job in enumerate(jobs):
            try:
                text, k = self.check_question(job.question, job.top_k)
            except QAError as exc:
                results[i] = exc
                continue
            rows.append(_Row(i, job, text, k))
        if rows:
            with self._lock:
                self._answer(rows, results)
        assert all(r is not None for r in results)
        version = self.data.version
        return [replace(r, index_version=version) if isinstance(r, Answer) else r for r in results]  # type: ignore[misc]

    def _answer(self, rows: list[_Row], results: list[Answer | QAError | None]) -> None:
        t0 = time.perf_counter()
        for row in rows:
            row.q = self.parse(row.text, row.job.history)
        vectors = self.retriever.embedder.embed([row.q.query for row in rows])
        n_read = self.options.read_passages
        for row, vector in zip(rows, vectors, strict=True):
            row.hits = self.retriever.search(row.q.query, vector, max(row.k, n_read))
        t1 = time.perf_counter()
        reading = []
        for row in rows:
            if row.q.is_instruction:  # a question that gives the system orders is not a question about the articles
                reason = "the question gives instructions instead of asking about them"
                results[row.i] = self._abstain(row, reason, (t0, t1, t1, t1))
            else:
                reading.append(row)
        texts = [[self._readable(h.passage) for h in row.hits[:n_read]] for row in reading]
        readings_of = self.reader.read_many([(row.q.query, t) for row, t in zip(reading, texts, strict=True)])
        self._read_follow_ups_bare(reading, texts, readings_of)
        t_read = time.perf_counter()
        found_of = [
            self._candidates(readings, row.hits[:n_read], t)
            for row, readings, t in zip(reading, readings_of, texts, strict=True)
        ]
        judged_of = self.decider.judge_many(
            [(row.q, [f.candidate for f in found]) for row, found in zip(reading, found_of, strict=True)]
        )
        t2 = time.perf_counter()
        phrasing = []
        for row, readings, found, judged in zip(reading, readings_of, found_of, judged_of, strict=True):
            best = max(range(len(found)), key=lambda n: (judged[n].score, found[n].reading.margin), default=None)
            row.evidence = self._evidence(
                None if best is None else found[best], None if best is None else judged[best], readings
            )
            if best is None or judged[best].p < self.decider.threshold:
                reason = "none of the closest passages answers the question"
                results[row.i] = self._abstain(row, reason, (t0, t1, t_read, t2))
                continue
            row.citations = self._cite(best, found, judged)
            row.span = found[best].reading.span or ""
            row.lead = attributed_lead(row.citations[0].quote, row.span, row.q.names)
            row.loose = judged[best].loose or row.lead is not None
            phrasing.append(row)
        generated = self._phrase(phrasing)
        t3 = time.perf_counter()
        for row, (text, failure) in zip(phrasing, generated, strict=True):
            if row.job.cancel is not None and row.job.cancel.is_set():
                results[row.i] = Cancelled("the request was cancelled before its answer was verified")
                continue
            answer, mode, reason = self._verified(row, text)
            t4 = time.perf_counter()
            results[row.i] = Answer(
                row.q.text,
                answer,
                mode,
                row.citations,
                row.shown,
                _timings(t0, t1, t_read, t2, t3, t4),
                failure or reason,
                text,
                row.span,
                row.evidence,
            )

    # -- stages ----------------------------------------------------------------------------------
    def _read_follow_ups_bare(
        self, rows: Sequence[_Row], texts: list[list[str]], readings_of: list[list[Reading]]
    ) -> None:
        """Follow-ups are read a second time as asked, without the earlier turns' words, and each
        passage keeps the reading of higher margin (in place): the earlier words help some follow-ups
        and hurt others ("And how much across the whole programme?" read with "csc saving" scored the
        programme's £1.8bn at margin -1.0, as asked at 0.0). Adopted by rule 4 (eval/README.md): one
        more news-dev question right, none lost on any set.

        Example: "And how many top three hits?" after a question about the band -> the band's
        passage read both ways; the bare reading's span kept when its margin is higher.
        """
        again = [n for n, row in enumerate(rows) if row.q.follow_up and row.q.query != row.q.text]
        if not again:
            return
        bare = self.reader.read_many([(rows[n].q.text, texts[n]) for n in again])
        for n, extra in zip(again, bare, strict=True):
            best = {r.passage: r for r in readings_of[n]}
            for r in extra:
                if r.passage not in best or r.margin > best[r.passage].margin:
                    best[r.passage] = r
            readings_of[n] = [best[k] for k in sorted(best)]

    def _readable(self, passage: Passage) -> str:
        """The passage with sentences that give orders to an AI blanked out (same length, so offsets hold).

        Such sentences are never evidence for anything: the reader cannot pick a span from them.
        """
        text = passage.text
        for sid in passage.sentence_ids:
            s = self.data.sentences[sid]
            if looks_like_instruction(s.text):
                a, b = s.start - passage.start, s.end - passage.start
                text = text[:a] + " " * (b - a) + text[b:]
        return text

    def _candidates(self, readings: Sequence[Reading], hits: Sequence[Hit], texts: Sequence[str]) -> list[_Found]:
        """Every passage's span, located in its document, as the decision reads it; best margin first.

        A span that reaches across a blanked instruction sentence would quote it: it is no candidate.
        """
        docs = self.data.documents
        out = []
        for reading in sorted((r for r in readings if r.span and r.span.strip()), key=lambda r: (-r.margin, r.passage)):
            hit = hits[reading.passage]
            text = docs[hit.passage.doc_id].text
            found = self._locate(reading, hit)
            if any(looks_like_instruction(text[a:b]) for a, b in found.sentences):
                continue
            window = verifier_input(texts[reading.passage], reading.start or 0, reading.end or 0)
            candidate = Candidate(reading.span or "", window, text, reading.margin, reading.passage + 1, hit.dense)
            out.append(replace(found, candidate=candidate))
        return out

    def _locate(self, reading: Reading, hit: Hit) -> _Found:
        p = hit.passage
        start, end = p.start + (reading.start or 0), p.start + (reading.end or 0)
        sentences = tuple(
            (s.start, s.end)
            for s in (self.data.sentences[i] for i in p.sentence_ids)
            if s.start < end and start < s.end
        )
        return _Found(reading, hit, start, end, sentences or ((start, end),))

    def _cite(self, best: int, found: Sequence[_Found], judged: Sequence[Judgement]) -> tuple[Citation, ...]:
        """The sentence(s) holding the chosen span, then corroboration: another passage whose own span states
        the same value and also reaches the operating point (e.g. the other article's "£1bn")."""
        chosen = found[best]
        docs = self.data.documents
        spans: list[tuple[str, int, int]] = [
            (chosen.hit.passage.doc_id, chosen.sentences[0][0], chosen.sentences[-1][1])
        ]
        span = chosen.reading.span or ""
        for n in sorted(range(len(found)), key=lambda n: -judged[n].p):
            if len(spans) >= self.options.max_citations:
                break
            other = found[n]
            if n == best or judged[n].p < self.decider.threshold:
                continue
            if not (states_value(other.reading.span or "", span) or states_value(span, other.reading.span or "")):
                continue
            key = (other.hit.passage.doc_id, other.sentences[0][0], other.sentences[-1][1])
            if all(not (k[0] == key[0] and k[1] < key[2] and key[1] < k[2]) for k in spans):
                spans.append(key)
        citations = tuple(make_citation(i, docs[d], s, e) for i, (d, s, e) in enumerate(spans, start=1))
        assert all(citation_is_valid(c, docs) for c in citations)  # by construction; guards regressions
        return citations

    def _phrase(self, rows: Sequence[_Row]) -> list[tuple[str | None, str]]:
        """The generator's one-sentence phrasing of each row's span (one batch per token limit), or None
        with why when there is none."""
        out: list[tuple[str | None, str]] = [(None, "")] * len(rows)
        if self.generator is None:
            return out
        by_limit: dict[int, list[int]] = {}
        for n, row in enumerate(rows):
            if not row.loose and not looks_like_instruction(row.citations[0].quote):
                limit = min(self.options.max_new_tokens, row.job.max_new_tokens or self.options.max_new_tokens)
                by_limit.setdefault(limit, []).append(n)
        for limit, members in by_limit.items():
            batch = [
                GenerationRow(
                    build_messages(rows[n].q.text, rows[n].span, rows[n].citations[0].quote),
                    # Stops within one decoding step when the model starts to invent (or the caller gives up).
                    should_stop=functools.partial(_invents, quote=rows[n].citations[0].quote),
                    cancel=rows[n].job.cancel,
                )
                for n in members
            ]
            try:
                texts = generate_many(self.generator, batch, max_new_tokens=limit)
            except GeneratorError as exc:  # a broken generator degrades to extractive answers
                log.warning("generator failed, answering extractively: %s", exc)
                for n in members:
                    out[n] = (None, f"generator failed: {exc}")
                continue
            for n, text in zip(members, texts, strict=True):
                out[n] = (text, "")
        return out

    def _verified(self, row: _Row, generated: str | None) -> tuple[str, AnswerMode, str]:
        q, span, citations = row.q, row.span, row.citations
        if row.lead is not None:  # the question gives a party of the quote another role: say whose it is
            return compose([c.quote for c in citations], row.lead), AnswerMode.EXTRACTIVE, LOOSE_REASON
        if row.loose:
            return loose_answer([c.quote for c in citations]), AnswerMode.EXTRACTIVE, LOOSE_REASON
        reason = "no generator configured"
        if generated is not None:
            text = clean_generation(generated)
            verdict = verify_answer(text, [citations[0].quote], question=q)
            problems = list(verdict.problems)
            if not states_value(text, span):
                problems.append(f"does not state the reader's answer {span!r}")
            if not problems:
                cited = text if parse_markers(text) == [1] else f"{strip_markers(text).rstrip()} [1]"
                return cited, AnswerMode.GENERATED, ""
            reason = "generated answer failed verification: " + "; ".join(problems)
        return compose([c.quote for c in citations], span), AnswerMode.EXTRACTIVE, reason

    def _abstain(self, row: _Row, reason: str, marks: tuple[float, float, float, float]) -> Answer:
        now = time.perf_counter()
        return Answer(
            row.q.text,
            _abstain_text(reason),
            AnswerMode.ABSTAINED,
            (),
            row.shown,
            _timings(*marks, marks[-1], now),
            reason,
            evidence=row.evidence,
        )

    def _evidence(self, found: _Found | None, judgement: Judgement | None, readings: Sequence[Reading]) -> dict:
        """What the decision used, for the eval reports and the fitting."""
        return {
            "span": found.reading.span if found else None,
            "margin": round(found.reading.margin, 4) if found else None,
            "p_answer": judgement.p if judgement else None,
            "choose_score": judgement.score if judgement else None,
            "threshold": self.decider.threshold,
            "features": judgement.features if judgement else None,
            "passage_rank": found.reading.passage + 1 if found else None,
            "readings": [[r.span, round(r.score, 3), round(r.null, 3)] if r.span else None for r in readings],
        }


def _invents(partial: str, *, quote: str) -> bool:
    return early_reject(partial, [quote])


def _timings(t0: float, t1: float, t_read: float, t2: float, t3: float, t4: float) -> dict[str, float]:
    ms = lambda a, b: round((b - a) * 1000, 2)  # noqa: E731
    return {
        "retrieve": ms(t0, t1),
        "read": ms(t1, t_read),
        "decide": ms(t_read, t2),
        "generate": ms(t2, t3),
        "verify": ms(t3, t4),
        "total": ms(t0, t4),
    }


def _check_device(device: str) -> None:
    """QA_DEVICE=cuda needs a CUDA build of torch and a visible GPU; say so instead of failing later."""
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise ModelNotFound(
            f"QA_DEVICE={device} but torch {torch.__version__} sees no CUDA device; "
            "install a CUDA build of torch on a GPU machine, or use QA_DEVICE=cpu"
        )


def _set_threads(torch_threads: int, faiss_threads: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)
