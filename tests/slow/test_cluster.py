"""Ray Serve replicas (``api/cluster.py``): a 2-node local Ray cluster with 2 answering replicas, real
models, run by ``cluster_probe.py`` inside a private network namespace that has only loopback (Ray's
own traffic goes to the external address otherwise; ``unshare -n``, then ``ip link set lo up``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from api.schemas import AskResponse
from eval.dataset import load_dataset
from index.documents import load_documents
from index.embedder import SentenceTransformerEmbedder
from index.store import build_index, save_index
from tests.conftest import ROOT, SEEDS
from tests.slow.conftest import free_port

pytest.importorskip("ray.serve", reason="the cluster extra is not installed: pip install -e '.[cluster]'")

SEED = {item.id: item for item in load_dataset(ROOT / "eval" / "datasets" / "seed.yaml")}
QUESTIONS = [SEED[i].question for i in ("n01", "n02", "n03", "n04")] + ["What is the capital of Peru?"]


def _namespace_problem() -> str | None:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "unshare or ip is missing: Ray's tests need a private network namespace"
    made = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if made.returncode:
        return (
            f"cannot make a private network namespace ({made.stderr.strip()[:200]}); Ray would use the external address"
        )
    return None


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("cluster")
    source = tmp / "source"
    shutil.copytree(SEEDS, source)  # POST /v1/documents writes its source file here
    save_index(build_index(load_documents(source), SentenceTransformerEmbedder()), tmp / "index")
    config = {
        "port": free_port(),
        "index_dir": str(tmp / "index"),
        "source_dir": str(source),
        "questions": QUESTIONS,
    }
    (tmp / "config.json").write_text(json.dumps(config))
    out = tmp / "out.json"
    command = f"ip link set lo up && exec {sys.executable} -m tests.slow.cluster_probe {tmp / 'config.json'} {out}"
    run = subprocess.run(["unshare", "-n", "sh", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.is_file(), run.stderr[-3000:]
    result = json.loads(out.read_text())
    result["stderr"] = run.stderr[-3000:]
    result["retried"] = run.stderr.count("answering replica failed")  # batches resent after the kill
    return result


def _key(body: dict) -> tuple:
    return body["answer"], body["abstained"], [(c["doc_id"], c["start"], c["end"]) for c in body["citations"]]


def test_two_replicas_on_two_nodes(probe):
    assert probe["nodes"] == 2, probe["stderr"]
    assert len(probe["replica_pids"]) == 2 and len(probe["replica_nodes"]) == 2


def test_an_index_built_with_ray_data_is_the_single_process_index(probe):
    built = probe["ray_build"]
    assert built["same_passages"] and built["same_sentences"] and built["passages"] > 8  # more than one batch
    assert built["max_vector_difference"] < 1e-4, built


def test_answers_equal_the_single_process(probe, real_pipeline):
    for question, (status, body) in zip(QUESTIONS, probe["answers"], strict=True):
        assert status == 200, body
        alone = AskResponse.from_answer(real_pipeline.ask(question), real_pipeline.documents).model_dump(mode="json")
        assert _key(body) == _key(alone), question
    assert probe["answers"][-1][1]["abstained"]  # off-topic: refused there too


def test_every_route_kind_answers_through_the_ingress(probe):
    status, chat = probe["chat"]
    assert status == 200 and chat["object"] == "chat.completion" and chat["choices"][0]["message"]["content"]
    status, lines = probe["stream"]
    assert status == 200 and lines[-1] == "data: [DONE]" and len(lines) > 3
    status, bad = probe["bad"]
    assert status == 422 and "error" in bad
    assert probe["page"] == 200


def test_a_posted_document_is_answered_by_every_replica_within_2_s(probe):
    followed = probe["follow"]  # eval.cluster.follow: 4 clients asking without pause, answers naming their version
    assert followed["post_status"] == 201 and followed["posted"]["passages"] >= 1
    assert followed["new_answers"] >= 12 and followed["new_answers_state_the_figure"], followed
    assert followed["last_old_answer_received_s"] <= 2.0, followed  # both replicas answer from it within 2 s
    assert len(probe["replica_versions"]) == 1  # both replicas answer from one version


def test_rows_given_up_at_the_ingress_stop_on_their_replica(probe):
    assert probe["cancelled_batch"] == ["Cancelled", "Answer"], probe["stderr"]
    assert probe["left_mid_answer"]["rows_stopped"] >= 1, probe["left_mid_answer"]  # a client that left


def test_a_killed_replica_is_retried_or_refused_cleanly_and_comes_back(probe):
    statuses = [s for s, _ in probe["under_kill"]]
    assert set(statuses) <= {200, 503}, statuses
    assert all("error" in body for s, body in probe["under_kill"] if s == 503)
    assert statuses.count(200) >= len(statuses) // 2
    assert probe["replica_back_s"] is not None, probe["stderr"]
    assert probe["after_kill"][0] == 200
