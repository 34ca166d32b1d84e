"""``qa eval``: the hand-written eval set (default) or ``qa eval squad FILE``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.dataset import DEFAULT_DATASET, DatasetError, load_dataset
from qa.config import settings_from_args
from qa.progress import progress_reporter

DEFAULT_OUT = Path("eval/out")
REPO = Path(__file__).resolve().parents[1]


def repo_relative(path: Path) -> str:
    """``path`` as reports name it: relative to the repository when inside it, else just its name.

    Example: repo_relative(REPO / "eval/datasets/seed.yaml") -> "eval/datasets/seed.yaml"
    """
    resolved = Path(path).resolve()
    return resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else resolved.name


def register(sub) -> None:  # noqa: ANN001
    """Add ``qa eval`` (the ``qa.commands`` entry point named ``eval`` in ``pyproject.toml``)."""
    p = sub.add_parser(
        "eval",
        help="run the eval set, or `qa eval squad FILE` for a SQuAD 2.0 file",
        description="qa eval [--dataset FILE] [--url URL] [--compare BASELINE] | qa eval squad FILE [--limit N]",
    )
    p.add_argument("target", nargs="*", help="empty for the eval set, or: squad FILE")
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="eval file (YAML or JSONL)")
    p.add_argument("--url", help="evaluate a running server instead of an in-process pipeline")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for report.json/.md/.png")
    p.add_argument("--name", default="report", help="file stem of the report files (default report)")
    p.add_argument("--compare", type=Path, help="a baseline report.json: print improvements and regressions")
    p.add_argument("--generator", choices=["packaged", "local", "openai", "none"])
    p.add_argument("--extra-docs", type=Path, help="add these *.txt documents to a temporary copy of the corpus")
    p.add_argument(
        "--source",
        dest="source_dir",
        type=Path,
        help="answer over this folder of *.txt articles instead of QA_SOURCE_DIR (indexed once, then reused)",
    )
    p.add_argument(
        "--index-dir",
        dest="index_dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="the index of --source (default: a folder per source under the cache, outside the repository)",
    )
    p.add_argument("--limit", type=int, help="squad: questions to sample (default all)")
    p.add_argument("--sample-seed", type=int, default=0, help="squad: sampling seed")
    p.add_argument("--json", dest="json_out", type=Path, help="squad: where to write the JSON report")
    p.add_argument("--squad-index-dir", type=Path, help="squad: index folder (default .index-squad/<file hash>)")
    p.add_argument(
        "--include-trained",
        action="store_true",
        help="squad: also ask the questions of articles the reader was trained on (default: skip them; reader.json lists them)",
    )
    p.add_argument(
        "--gold-paragraph", action="store_true", help="squad: the reader alone on each question's own paragraph"
    )
    p.add_argument(
        "--answer-threshold",
        type=float,
        help="override the operating point (0..1; 0 answers every question, so reports hold every decision's inputs)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="questions answered together (one pipeline batch; concurrent requests with --url); 1: one by one",
    )
    p.set_defaults(func=run)


def _bar(desc: str):  # noqa: ANN202
    return progress_reporter(desc, "question")


def _deterministic(settings) -> None:  # noqa: ANN001
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(settings.torch_threads)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.answer_threshold is not None:
        settings = settings.model_copy(update={"answer_threshold": args.answer_threshold})
    if args.target and args.target[0] == "squad":
        if len(args.target) != 2:
            print("usage: qa eval squad FILE [--limit N] [--sample-seed S] [--json OUT]", file=sys.stderr)
            return 2
        return run_squad(Path(args.target[1]), args, settings)
    if args.target:
        print(f"unknown eval target {args.target[0]!r}; use `qa eval` or `qa eval squad FILE`", file=sys.stderr)
        return 2
    baseline = None
    if args.compare:  # checked before the run, not after it
        try:
            baseline = json.loads(args.compare.read_text(encoding="utf-8"))
            if not isinstance(baseline, dict) or not {"rows", "metrics"} <= baseline.keys():
                raise ValueError("no rows and metrics in it")
        except (OSError, ValueError) as exc:
            print(f"qa eval: --compare {args.compare}: not a readable report.json ({exc})", file=sys.stderr)
            return 2
    from eval import report as rep
    from eval.runner import InProcess, OverHttp
    from eval.runner import run as run_items

    try:
        items = load_dataset(args.dataset)
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.url:
        backend = OverHttp(args.url)
    else:
        from qa.pipeline import Pipeline

        _deterministic(settings)
        if args.extra_docs:
            backend = InProcess(_pipeline_with_extra_docs(settings, args.extra_docs))
        elif args.source_dir:
            index_dir = getattr(args, "index_dir", None) or source_index_dir(settings.cache_dir, args.source_dir)
            backend = InProcess(Pipeline.from_settings(settings, index_for=_fresh_index(args.source_dir, index_dir)))
        else:
            backend = InProcess(Pipeline.from_settings(settings))
    rows = run_items(items, backend, _bar("eval"), batch_size=max(1, args.batch_size))
    meta = {"dataset": repo_relative(args.dataset), **backend.describe()}
    report = rep.build_report(rows, meta)
    path = rep.write(report, args.out, args.name)
    m = report["metrics"]
    print(
        f"correctness {m['correctness']:.3f}  citation validity {m['citation_validity']}  "
        f"abstention P/R {m['abstention_precision']}/{m['abstention_recall']}  false refusals {m['false_refusal_rate']}"
    )
    print(f"report: {path} (+ .md, .png)")
    if baseline is not None:
        improved, regressed, lines = rep.compare(baseline, report)
        print(f"\nvs {args.compare}:")
        for line in lines:
            print(f"  {line}")
        print(f"\nimproved ({len(improved)}):")
        for line in improved:
            print(f"  + {line}")
        print(f"\nregressed ({len(regressed)}):")
        for line in regressed:
            print(f"  - {line}")
    return 0


def source_index_dir(cache_dir: Path, source: Path) -> Path:
    """Where ``qa eval --source`` keeps a folder's index: one per folder, under the cache (not the repo).

    Example: source_index_dir(Path("~/.cache/newsqa"), Path("../shared/benchmarks/bbc-news"))
      -> ~/.cache/newsqa/indexes/bbc-news-<12 hex digits of the folder's resolved path>
    """
    import hashlib

    key = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:12]
    return Path(cache_dir) / "indexes" / f"{Path(source).resolve().name}-{key}"


def _fresh_index(source: Path, index_dir: Path):  # noqa: ANN202
    """``index_for`` for `Pipeline.from_settings`: ``index_dir`` built from ``source`` unless already fresh."""
    from index.documents import load_documents
    from index.store import index_state, refresh_folder

    def index_for(embedder) -> Path:  # noqa: ANN001
        docs = load_documents(Path(source))
        if index_state(index_dir, docs, embedder.model_id) != "fresh":
            bar = progress_reporter(f"indexing {len(docs)} documents", "passage")
            changes = refresh_folder(index_dir, docs, embedder, progress=bar)[1]
            print(f"indexed {source} -> {index_dir}: {changes.summary()}", file=sys.stderr)
        return index_dir

    return index_for


def _pipeline_with_extra_docs(settings, extra: Path):  # noqa: ANN001, ANN202
    """The seed corpus plus ``extra`` documents, indexed in a temporary folder (the real index is untouched)."""
    import tempfile

    from index.documents import load_documents
    from index.store import build_index, save_index
    from qa.pipeline import Pipeline

    def index_for(embedder) -> Path:  # noqa: ANN001
        docs = load_documents(Path(settings.source_dir)) + load_documents(extra)
        tmp = Path(tempfile.mkdtemp(prefix="qa-eval-index-"))
        save_index(build_index(docs, embedder), tmp)
        return tmp

    return Pipeline.from_settings(settings, index_for=index_for)


def run_squad(path: Path, args: argparse.Namespace, settings) -> int:  # noqa: ANN001
    import time

    from eval import squad
    from index.store import build_index, index_state, save_index
    from qa.pipeline import Pipeline, _set_threads
    from qa.reader.reader import load_config, make_reader

    _deterministic(settings)
    _set_threads(settings.torch_threads, settings.faiss_threads)

    docs, questions = squad.load_squad(path)
    trained_on = load_config().get("trained_articles", [])
    trained = [] if args.include_trained else trained_on
    asked = squad.without_articles(questions, trained)
    chosen = squad.sample(asked, args.limit, args.sample_seed)
    if len(asked) < len(questions):
        print(
            f"skipping {len(questions) - len(asked)} questions of {len(trained)} articles the reader trained on",
            file=sys.stderr,
        )
    if args.gold_paragraph:
        reader = make_reader(settings)
        t = time.perf_counter()
        result = squad.evaluate_reader(reader, docs, chosen, _bar("squad reader"))
        return _report_squad(
            result,
            path,
            args,
            docs,
            questions,
            chosen,
            trained,
            time.perf_counter() - t,
            "reader only, gold paragraph",
            reader,
        )
    index_dir = args.squad_index_dir or Path(".index-squad") / squad.file_key(path)

    def index_for(embedder) -> Path:  # noqa: ANN001
        if index_state(index_dir, docs, embedder.model_id) != "fresh":
            bar = _bar(f"indexing {len(docs)} paragraphs")
            t = time.perf_counter()
            save_index(build_index(docs, embedder, progress=bar), index_dir)
            print(f"indexed in {time.perf_counter() - t:.0f} s -> {index_dir}", file=sys.stderr)
        return index_dir

    pipeline = Pipeline.from_settings(settings, index_for=index_for)
    t = time.perf_counter()
    result = squad.evaluate(pipeline, chosen, _bar("squad"), batch_size=max(1, args.batch_size))
    result["meta"] = {
        "generator": pipeline.generator.model_id if pipeline.generator else "none",
        "embedding_model": pipeline.embedder.model_id,
        "decider": pipeline.decider.model_id,
        "answer_threshold": pipeline.decider.threshold,
    }
    if args.include_trained and trained_on:  # the unseen part's scores, beside the whole run's
        held_out = {q.qid for q in squad.without_articles(chosen, trained_on)}
        result["held_out"] = squad.summarize([r for r in result["rows"] if r["id"] in held_out], rows_too=False)
    return _report_squad(
        result, path, args, docs, questions, chosen, trained, time.perf_counter() - t, "open retrieval", pipeline.reader
    )


def _report_squad(result, path, args, docs, questions, chosen, trained, elapsed, setting, reader) -> int:  # noqa: ANN001
    from eval import squad

    result["meta"] = {
        "file": repo_relative(path),
        "file_sha256_12": squad.file_key(path),
        "setting": setting,
        "paragraphs": len(docs),
        "questions_in_file": len(questions),
        "skipped_trained_articles": sorted(trained),
        "questions_asked": len(chosen),
        "sample_seed": args.sample_seed if args.limit else None,
        "reader": reader.model_id,
        **result.get("meta", {}),
        "seconds": round(elapsed, 1),
    }
    for name in ("overall", "HasAns", "NoAns"):
        b = result[name]
        if b["n"]:
            print(
                f"{name:8s} n={b['n']:5d}  EM {b['exact']:6.2f}  F1 {b['f1']:6.2f}  abstained {b['abstained']:.2f}  "
                f"hit@1 {b['hit@1']:.2f}  hit@5 {b['hit@5']:.2f}"
            )
    print(f"null baseline (always abstain) overall EM/F1: {result['null_baseline_overall']}")
    if "held_out" in result:
        h = result["held_out"]
        print(
            f"held-out articles only (n={h['overall']['n']}): F1 {h['overall']['f1']:.2f}, HasAns F1 "
            f"{h['HasAns']['f1']:.2f}, NoAns {h['NoAns']['f1']:.2f}; always abstain {h['null_baseline_overall']}"
        )
    print(
        f"latency p50 {result['latency_ms']['p50']:.0f} ms  p95 {result['latency_ms']['p95']:.0f} ms; {elapsed:.0f} s total"
    )
    out = args.json_out or DEFAULT_OUT / "squad.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"report: {out}")
    return 0
