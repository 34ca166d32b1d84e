"""The dense index chosen by size (``index/dense.py``): the choice, exact search, and IVF versions
written, loaded, refreshed and searched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.dense import EXACT_UP_TO, DenseSpec, ExactSearch, IVFSearch, build_ivf, choose, nprobe_for
from index.documents import parse_document
from index.store import build_index, current_version, index_state, load_index, refresh, save_index
from qa.errors import IndexCorrupt
from qa.retrieve import Retriever


def _clustered(n: int, dim: int = 32, centres: int = 40, seed: int = 0) -> np.ndarray:
    """Normalised vectors around a few centres: like passages, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    x = means[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _articles(n: int) -> list:
    return [
        parse_document(
            f"town-{i}",
            f"Town {i} news\n\nThe council of town {i} opened {i + 2} parks in 200{i % 10}. "
            f"Its mayor, the {i}th, said they cost £{i}m. Residents of town {i} welcomed the parks.",
        )
        for i in range(n)
    ]


def test_exact_up_to_the_threshold_then_ivf_with_2_sqrt_n_lists():
    assert choose(EXACT_UP_TO).kind == "exact"
    big = choose(EXACT_UP_TO + 1)
    assert big.kind == "ivf" and big.nlist == round(2 * (EXACT_UP_TO + 1) ** 0.5) and big.nprobe == 64
    assert choose(200_000) == DenseSpec("ivf", 894, 64, "auto")
    assert choose(2_000_000).nprobe == 128 == nprobe_for(2_000_000)  # the measured settings for recall 0.95
    assert nprobe_for(20_000_000) == 256  # extrapolated: doubling per tenfold growth
    assert choose(5_000_000, "exact").kind == "exact"
    assert choose(50, "ivf").kind == "ivf" and choose(50, "ivf").nprobe <= choose(50, "ivf").nlist


def test_ivf_keeps_its_lists_while_they_fit_and_retrains_when_outgrown():
    first = choose(200_000)
    assert choose(210_000, previous=first).nlist == first.nlist  # 1 article more: same centroids
    assert choose(700_000, previous=first).nlist == first.nlist  # 2·√n = 1,673: within 2x of 894
    assert choose(1_000_000, previous=first).nlist == 2000  # 2·√n = 2,000: more than 2x, retrained


def test_exact_search_is_what_indexflatip_finds():
    import faiss

    x = _clustered(3_000)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    for q in x[:20]:
        want_s, want_i = flat.search(q.reshape(1, -1), 10)
        got_s, got_i = ExactSearch(x).search(q, 10)
        assert (got_i == want_i[0]).all() and np.allclose(got_s, want_s[0])
    few = ExactSearch(x[:3]).search(x[0], 10)[1]  # asked for more than there are: all of them
    assert few[0] == 0 and sorted(few.tolist()) == [0, 1, 2]


def test_ivf_finds_what_exact_search_finds():
    x = _clustered(20_000, dim=48, centres=200)
    queries = _clustered(200, dim=48, centres=200, seed=1)
    spec = choose(len(x), "ivf")
    ivf = IVFSearch(build_ivf(x, spec), spec.nprobe)
    exact = ExactSearch(x)
    recall = np.mean([len(set(ivf.search(q, 10)[1]) & set(exact.search(q, 10)[1])) / 10 for q in queries])
    assert recall >= 0.9, recall


def test_an_ivf_version_is_written_loaded_and_searched_like_an_exact_one(tmp_path, embedder):
    docs = _articles(60)
    exact = build_index(docs, embedder)
    ivf = build_index(docs, embedder, dense="ivf")
    assert exact.dense.kind == "exact" and ivf.dense.kind == "ivf"
    save_index(ivf, tmp_path)
    raw = json.loads((current_version(tmp_path) / "manifest.json").read_text())
    assert raw["dense"] == {"kind": "ivf", "nlist": ivf.dense.nlist, "nprobe": ivf.dense.nprobe, "choice": "ivf"}
    loaded = load_index(tmp_path, embedder)
    assert loaded.dense == ivf.dense and loaded.dense_index is not None
    assert np.allclose(loaded.passage_vectors, exact.passage_vectors)
    # all lists probed: the same scores as exact search (ties may come in another order)
    question = "How many parks did town 7 open?"
    q = embedder.embed([question])[0]
    everything = Retriever(loaded, embedder, nprobe=loaded.dense.nlist)
    reference = Retriever(exact, embedder)
    got, want = everything.dense.search(q, 30), reference.dense.search(q, 30)
    assert np.allclose(got[0], want[0], atol=1e-5)
    assert [h.passage.passage_id for h in everything.search(question, q, 3)][:1] == [
        h.passage.passage_id for h in reference.search(question, q, 3)
    ][:1]
    assert isinstance(everything.dense, IVFSearch) and isinstance(reference.dense, ExactSearch)


def test_refreshing_an_ivf_index_keeps_its_centroids_and_its_choice(tmp_path, embedder):
    docs = _articles(60)
    first = build_index(docs, embedder, dense="ivf")
    added = parse_document("zoo", "Zoo news\n\nThe zoo has 41 penguins. The keeper counted them in 2005.")
    second, changes = refresh(first, [*docs, added], embedder)
    assert changes.summary().startswith("1 added") and second.dense.choice == "ivf"
    assert second.dense.nlist == first.dense.nlist
    old = first.dense_index.quantizer.reconstruct_n(0, first.dense.nlist)
    assert np.array_equal(second.dense_index.quantizer.reconstruct_n(0, second.dense.nlist), old)
    assert second.dense_index.ntotal == len(second.passages)
    # asked for exact: the choice changes with it
    assert refresh(second, [*docs, added], embedder, dense="exact")[0].dense.kind == "exact"


def test_an_index_without_a_dense_entry_reads_as_exact(tmp_path, tiny_docs, embedder):
    save_index(build_index(tiny_docs, embedder), tmp_path)
    path = current_version(tmp_path) / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["dense"]  # written before index/dense.py
    path.write_text(json.dumps(manifest))
    assert load_index(tmp_path, embedder).dense == DenseSpec()
    assert index_state(tmp_path, tiny_docs, embedder.model_id, "auto") == "fresh"
    assert index_state(tmp_path, tiny_docs, embedder.model_id, "ivf") == "stale"


def test_a_manifest_that_disagrees_with_its_faiss_file_is_corrupt(tmp_path, tiny_docs, embedder):
    save_index(build_index(tiny_docs, embedder), tmp_path)
    path = current_version(tmp_path) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["dense"] = {"kind": "ivf", "nlist": 4, "nprobe": 4, "choice": "ivf"}
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="manifest says ivf"):
        load_index(tmp_path, embedder)


def test_the_command_line_and_the_environment_choose_the_dense_index(monkeypatch):
    from qa.cli import parser
    from qa.config import settings_from_args

    assert settings_from_args(parser().parse_args(["index", "build"])).dense_index == "auto"
    assert settings_from_args(parser().parse_args(["index", "build", "--dense", "ivf"])).dense_index == "ivf"
    monkeypatch.setenv("QA_DENSE_INDEX", "exact")
    assert settings_from_args(parser().parse_args(["index", "build"])).dense_index == "exact"
    with pytest.raises(SystemExit):
        parser().parse_args(["index", "build", "--dense", "hnsw"])


def _lists(index) -> dict[int, tuple[int, bytes]]:  # noqa: ANN001
    """{id: (list number, vector bytes)} of an IVF index (a `LayeredIVF` flattened): what it holds,
    whatever the order in a list."""
    import faiss

    from index.dense import flat_ivf

    index = flat_ivf(index)
    out = {}
    for number in range(index.nlist):
        size = index.invlists.list_size(number)
        ids = faiss.rev_swig_ptr(index.invlists.get_ids(number), size).copy()
        codes = faiss.rev_swig_ptr(index.invlists.get_codes(number), size * index.code_size).copy()
        for k, i in enumerate(ids):
            out[int(i)] = (number, codes[k * index.code_size : (k + 1) * index.code_size].tobytes())
    return out


def test_an_updated_ivf_holds_what_a_re_add_holds_and_leaves_the_original_alone():
    """`updated_ivf` (rows kept, moved, dropped and added) against `build_ivf` re-adding every vector
    to the same centroids: the same vectors in the same lists under the same ids, the same search."""
    from index.dense import updated_ivf

    old_vectors = _clustered(3_000)
    spec = choose(3_000, "ivf")
    old = build_ivf(old_vectors, spec)
    before = _lists(old)
    rng = np.random.default_rng(1)
    kept = np.sort(rng.choice(3_000, 2_900, replace=False))  # 100 rows dropped
    rows_from = np.concatenate([kept[:1_000], [-1] * 7, kept[1_000:], [-1] * 30])  # the rest shift down
    rng.shuffle(rows_from[1_200:1_300])  # and some move
    fresh = _clustered(37, seed=9)
    vectors = np.zeros((len(rows_from), old_vectors.shape[1]), np.float32)
    vectors[rows_from >= 0] = old_vectors[rows_from[rows_from >= 0]]
    vectors[rows_from < 0] = fresh
    got = updated_ivf(old, rows_from, fresh)
    want = build_ivf(vectors, spec, trained=old)
    assert got.ntotal == want.ntotal == len(rows_from) and _lists(got) == _lists(want)
    queries = _clustered(20, seed=5)
    assert np.array_equal(got.search(queries, 10)[1], want.search(queries, 10)[1])
    assert _lists(old) == before  # the original (still answering) is untouched


def test_a_layered_ivf_searches_like_the_updated_index_and_shares_its_base():
    """Refreshes chained on a `LayeredIVF` (rows kept, moved, dropped and added each time) give the
    same lists and the same searches as `updated_ivf` applied step by step, nprobe 1 to all lists;
    the base index is never modified or copied."""
    from index.dense import LayeredIVF, updated_ivf

    rng = np.random.default_rng(3)
    vectors = _clustered(3_000)
    spec = choose(3_000, "ivf")
    base = build_ivf(vectors, spec)
    before = _lists(base)
    layered, flat = LayeredIVF(base), base
    for step in range(4):
        n = flat.ntotal
        kept = np.sort(rng.choice(n, n - 40, replace=False))
        rows_from = np.concatenate([kept[:500], [-1] * 5, kept[500:], [-1] * 25])
        rng.shuffle(rows_from[600:700])
        fresh = _clustered(30, seed=10 + step)
        layered, flat = layered.updated(rows_from, fresh), updated_ivf(flat, rows_from, fresh)
        assert layered.base is base and layered.ntotal == flat.ntotal == len(rows_from)
        assert _lists(layered) == _lists(flat)
        queries = _clustered(25, seed=20 + step)
        for nprobe in (1, 4, spec.nlist):
            params = faiss_params(nprobe)
            got_scores, got = layered.search(queries, 10, params=params)
            want_scores, want = flat.search(queries, 10, params=params)
            assert np.allclose(got_scores, want_scores, atol=1e-5)
            assert [set(r) for r in got] == [set(r) for r in want]  # ties may come in another order
    assert _lists(base) == before


def faiss_params(nprobe: int):  # noqa: ANN201
    import faiss

    return faiss.SearchParametersIVF(nprobe=nprobe)


def test_document_writes_on_an_ivf_index_are_deltas_too(tmp_path, embedder, monkeypatch):
    """Above the exact-search size a write is still a delta, applied by updating the IVF lists; what
    loads equals what the writer holds, searches included."""
    import index.dense as dense
    from index.store import follow, save_update, update_index

    monkeypatch.setattr(dense, "EXACT_UP_TO", 50)  # the 60 articles' passages are "archive scale" here
    docs = _articles(60)
    data = build_index(docs, embedder)
    assert data.dense.kind == "ivf"
    save_index(data, tmp_path)
    replica = load_index(tmp_path, embedder)
    edits = [
        (parse_document("zoo", "Zoo news\n\nThe zoo has 41 penguins. The keeper counted them in 2005."), None),
        (None, "town-3"),
        (parse_document("town-5", "Town 5 news\n\nThe council of town 5 closed 2 parks in 2006."), None),
    ]
    for upsert, remove in edits:
        new, _ = update_index(data, embedder, upsert=upsert, remove=remove)
        folder = save_update(new, tmp_path, data)
        assert (folder / "delta.jsonl").is_file()
        data = new
    loaded = load_index(tmp_path, embedder)
    followed, rows_from = follow(replica, tmp_path, embedder)
    assert rows_from is not None and followed.version == loaded.version == data.version
    q = embedder.embed(["How many penguins does the zoo have?", "parks in town 5"])
    for other in (loaded, followed):
        assert list(other.documents) == list(data.documents)
        assert np.allclose(other.passage_vectors, data.passage_vectors)
        assert _lists(other.dense_index) == _lists(data.dense_index)
        assert np.array_equal(other.dense_index.search(q, 5)[1], data.dense_index.search(q, 5)[1])


def test_a_write_that_changes_the_dense_index_is_a_full_version(tmp_path, embedder, monkeypatch):
    import index.dense as dense
    from index.store import refresh_folder

    monkeypatch.setattr(dense, "EXACT_UP_TO", 50)
    docs = _articles(60)
    refresh_folder(tmp_path, docs, embedder)  # auto: IVF
    data, _, folder = refresh_folder(tmp_path, docs, embedder, dense="exact")
    assert (folder / "passages.faiss").is_file() and data.dense.kind == "exact"
    loaded = load_index(tmp_path, embedder)
    assert loaded.dense.kind == "exact" and loaded.dense_index is None
    _, changes, again = refresh_folder(tmp_path, docs, embedder)  # nothing changed: no new version
    assert changes.none and again == folder
