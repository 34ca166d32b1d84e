"""The online path: question -> retrieve -> rank sentences -> abstain? -> generate -> verify -> answer."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from index.documents import Document
from index.embedder import Embedder, SentenceTransformerEmbedder
from index.store import IndexData, load_index
from qa.abstain import AbstainPolicy, Decision, Evidence, decide
from qa.answer_types import AnswerType, expected_type
from qa.citations import citation_is_valid, cite_in_order, make_citation, parse_markers, renumber, strip_markers
from qa.conversation import contextualize
from qa.errors import BadQuestion, BadRequest, Cancelled, DocumentNotFound, GeneratorError
from qa.extractive import asks_for_several, choose_several, choose_support, compose, short_answer_span, untyped_span
from qa.generate import Generator, build_messages, clean_generation
from qa.injection import looks_like_instruction
from qa.rank import score_sentences
from qa.retrieve import Retriever, question_terms
from qa.text import is_blank
from qa.types import Answer, AnswerMode, Citation, ScoredSentence
from qa.verify import Verdict, early_reject, states_value, verify_answer

log = logging.getLogger("qa")
_CAP_WORD_RE = re.compile(r"(?<![\w'’])([A-Z][\w'’-]*|\d[\d,.]*)")


@dataclass(frozen=True)
class PipelineOptions:
    max_question_chars: int = 1000
    default_top_k: int = 5
    max_top_k: int = 20
    evidence_sentences: int = 1
    max_new_tokens: int = 32
    policy: AbstainPolicy = field(default_factory=AbstainPolicy)


def _abstain_text(reason: str) -> str:
    return f"The articles do not say: {reason}. The closest passages are listed for reference."


class Pipeline:
    """Answers questions over one loaded index. Thread-safe: model calls are serialised by a lock."""

    def __init__(
        self,
        data: IndexData,
        embedder: Embedder,
        generator: Generator | None,
        options: PipelineOptions = PipelineOptions(),
    ) -> None:
        self.data = data
        self.embedder = embedder
        self.generator = generator
        self.options = options
        self.retriever = Retriever(data, embedder)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, progress: Callable[[str], None] | None = None) -> Pipeline:  # noqa: ANN001
        """Load the embedder, the index and the generator the settings name (heavy: seconds)."""
        from qa.generate import make_generator

        _set_threads(settings.torch_threads, settings.faiss_threads)
        embedder = SentenceTransformerEmbedder(Path(settings.embedder_path) if settings.embedder_path else None)
        embedder.warm_up()
        data = load_index(Path(settings.index_dir), embedder)
        generator = make_generator(settings, progress)
        options = PipelineOptions(
            max_question_chars=settings.max_question_chars,
            default_top_k=settings.default_top_k,
            max_top_k=settings.max_top_k,
            evidence_sentences=settings.evidence_sentences,
            max_new_tokens=settings.max_new_tokens,
            policy=AbstainPolicy(min_score=settings.abstain_min_score),
        )
        return cls(data, embedder, generator, options)

    # -- documents -------------------------------------------------------------------------------
    @property
    def documents(self) -> dict[str, Document]:
        return self.data.documents

    def document(self, doc_id: str) -> Document:
        try:
            return self.data.documents[doc_id]
        except KeyError:
            raise DocumentNotFound(f"no document with id {doc_id!r}; GET /v1/documents lists the ids") from None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the generator's tokenizer when it has one, else word pieces."""
        tokenizer = getattr(self.generator, "tokenizer", None)
        if tokenizer is not None:
            return len(tokenizer.encode(text, add_special_tokens=False))
        return len(re.findall(r"\w+|[^\w\s]", text))

    # -- answering -------------------------------------------------------------------------------
    def check_question(self, question: str, top_k: int | None) -> tuple[str, int]:
        """Validate and normalise the inputs; raise `BadQuestion` / `BadRequest` with the fix."""
        if not isinstance(question, str):
            raise BadQuestion(f"question must be a string, got {type(question).__name__}")
        cleaned = question.strip()
        if is_blank(question):
            raise BadQuestion("question is empty; send a non-blank question")
        if len(cleaned) > self.options.max_question_chars:
            raise BadQuestion(f"question is {len(cleaned)} characters; the limit is {self.options.max_question_chars}")
        k = self.options.default_top_k if top_k is None else top_k
        if not 1 <= k <= self.options.max_top_k:
            raise BadRequest(f"top_k must be between 1 and {self.options.max_top_k}; got {k}")
        return cleaned, k

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        history: Sequence[str] = (),
        max_new_tokens: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer ``question``; ``history`` holds earlier user turns, oldest first, for follow-ups."""
        question, k = self.check_question(question, top_k)
        t0 = time.perf_counter()
        with self._lock:
            own = self.retriever.correct(question)
            # History steers retrieval; term coverage and the answer type come from the question itself.
            contextual = contextualize(question, history)
            query = own if contextual == question else self.retriever.correct(contextual)
            query_vector = self.retriever.embed_query(query)
            hits = self.retriever.search(query, query_vector, max(k, 8))
            atype = expected_type(own)
            terms = question_terms(own)
            ranked = score_sentences(self.retriever, [t for t, _ in terms], query_vector, hits, atype)
            decision, evidence_facts = self._decide(own, terms, ranked, atype)
            t1 = time.perf_counter()
            shown_hits = tuple(hits[:k])
            if decision.abstain:
                return Answer(
                    question,
                    _abstain_text(decision.reason),
                    AnswerMode.ABSTAINED,
                    (),
                    shown_hits,
                    _timings(t0, t1, t1, time.perf_counter()),
                    decision.reason,
                    evidence=evidence_facts,
                )
            evidence = ranked[: self.options.evidence_sentences]
            generated: str | None = None
            failure = ""
            # Instructions found in documents never reach the model's prompt.
            if self.generator is not None and not any(looks_like_instruction(s.sentence.text) for s in evidence):
                sources = [s.sentence.text for s in evidence]
                try:
                    generated = self.generator.generate(
                        build_messages(question, sources),
                        max_new_tokens=min(self.options.max_new_tokens, max_new_tokens or self.options.max_new_tokens),
                        # Stops within one decoding step when the caller gives up.
                        should_stop=lambda partial: (
                            (cancel is not None and cancel.is_set()) or early_reject(partial, sources)
                        ),
                    )
                except GeneratorError as exc:  # a broken generator degrades to extractive answers
                    log.warning("generator failed, answering extractively: %s", exc)
                    failure = f"generator failed: {exc}"
            t2 = time.perf_counter()
            if cancel is not None and cancel.is_set():
                raise Cancelled("the request was cancelled before its answer was verified")
        text, mode, citations, reason, short = self._verified_answer(question, atype, evidence, ranked, generated)
        reason = failure or reason
        t3 = time.perf_counter()
        return Answer(
            question,
            text,
            mode,
            citations,
            shown_hits,
            _timings(t0, t1, t2, t3),
            reason,
            generated,
            short,
            evidence_facts,
        )

    def _decide(
        self, question: str, terms: list[tuple[str, str]], ranked: list[ScoredSentence], atype: AnswerType | None
    ) -> tuple[Decision, dict]:
        missing = tuple(raw for term, raw in terms if not self.retriever.term_known(term, raw))
        first_word = question.split()[0] if question.split() else ""
        names = {
            m.group(1).lower().rstrip("'’s.,") for m in _CAP_WORD_RE.finditer(question) if m.group(1) != first_word
        }
        best = ranked[0] if ranked else None
        top = ranked[:3]
        evidence = Evidence(
            best_score=best.score if best else 0.0,
            best_dense=max((s.dense for s in ranked[:5]), default=0.0),
            best_coverage=max((s.coverage for s in top), default=0.0),
            content_terms=len(terms),
            missing_terms=missing,
            missing_names=tuple(m for m in missing if m in names or m[:1].isdigit()),
            expected_type=atype.value if atype else None,
            type_found=atype is None or any(s.type_match for s in top),
        )
        return decide(evidence, self.options.policy), asdict(evidence)

    def _verified_answer(
        self,
        question: str,
        atype: AnswerType | None,
        evidence: list[ScoredSentence],
        ranked: list[ScoredSentence],
        generated: str | None,
    ) -> tuple[str, AnswerMode, tuple[Citation, ...], str, str]:
        docs = self.data.documents
        sources = [(s.sentence.doc_id, s.sentence.start, s.sentence.end) for s in evidence]
        reason = "no generator configured"
        lead = None
        span = short_answer_span(ranked[0].sentence.text, atype, question) if ranked else None
        if span:
            lead = ranked[0].sentence.text[span[0] : span[1]]
        if generated is not None:
            text = clean_generation(generated)
            used = [n for n in parse_markers(text) if 1 <= n <= len(sources)]
            auto = False
            if not used:
                # The model often omits markers; cite the first source that verifies the whole answer.
                for n, s in enumerate(evidence, start=1):
                    if verify_answer(text, [s.sentence.text], question=question, atype=atype).ok:
                        used, auto = [n], True
                        break
            mapping, citations = cite_in_order(sources, used, docs)
            verdict = verify_answer(text, [c.quote for c in citations], question=question, atype=atype)
            if verdict.ok and lead and not states_value(text, lead):
                # The model may pick the wrong figure or name from a verified sentence (171 vs 4,400).
                verdict = Verdict(False, (f"disagrees with the evidence's answer {lead!r}",))
            if verdict.ok and citations:
                answer = renumber(text, mapping)
                if auto:
                    answer = f"{answer.rstrip()} [1]"
                return answer, AnswerMode.GENERATED, tuple(citations), "", lead or strip_markers(answer)
            reason = "generated answer failed verification: " + "; ".join(verdict.problems or ("no citation",))
        chosen = choose_support(ranked, atype, lead)
        if atype is not None and asks_for_several(question):
            several, values = choose_several(ranked, atype, question)
            if len(values) > 1:
                chosen, lead = several, "; ".join(values)
        citations = tuple(
            make_citation(i, docs[s.sentence.doc_id], s.sentence.start, s.sentence.end) for i, s in enumerate(chosen, 1)
        )
        assert all(citation_is_valid(c, docs) for c in citations)  # by construction; guards regressions
        short = lead or (untyped_span(citations[0].quote, question) if citations else "")
        return compose([c.quote for c in citations], lead), AnswerMode.EXTRACTIVE, citations, reason, short


def _timings(t0: float, t1: float, t2: float, t3: float) -> dict[str, float]:
    ms = lambda a, b: round((b - a) * 1000, 2)  # noqa: E731
    return {"retrieve": ms(t0, t1), "generate": ms(t1, t2), "verify": ms(t2, t3), "total": ms(t0, t3)}


def _set_threads(torch_threads: int, faiss_threads: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)
