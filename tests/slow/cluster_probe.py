"""Run inside a private network namespace by ``test_cluster.py``: a 2-node local Ray cluster serving
`api.cluster`'s application with 2 answering replicas; every check's raw results go to a JSON file.

Ray sends its own traffic to the machine's external address even when told 127.0.0.1, so it runs only
where that address does not exist (``unshare -n``, then ``ip link set lo up``)::

    unshare -n sh -c 'ip link set lo up && exec python -m tests.slow.cluster_probe CONFIG.json OUT.json'
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx


def _ask(base: str, question: str, timeout: float = 60) -> tuple[int, dict]:
    r = httpx.post(f"{base}/v1/ask", json={"question": question}, timeout=timeout)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"raw": r.text[:300]}


def _replicas(handle, want: int, tries: int = 40) -> dict[int, str]:  # noqa: ANN001 - a DeploymentHandle
    """{pid: node id} of the answering replicas, found by asking until ``want`` different ones replied."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        info = handle.info.remote().result()
        seen[info["pid"]] = info["node"]
        if len(seen) >= want:
            break
    return seen


def main(config_path: str, out_path: str) -> int:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from api.cluster import APP_NAME, build
    from qa.config import Settings

    config = json.loads(Path(config_path).read_text())
    out: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        out["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        # 0. the index built by Ray Data across both nodes (qa index build --ray), beside the single-process one
        import numpy as np

        from index.documents import load_documents
        from index.embedder import SentenceTransformerEmbedder
        from index.ray_embed import RayDataEmbedder
        from index.store import load_index, refresh

        local = load_index(Path(config["index_dir"]), SentenceTransformerEmbedder())
        started = time.perf_counter()
        ray_built, _ = refresh(None, load_documents(Path(config["source_dir"])), RayDataEmbedder(batch_size=8))
        out["ray_build"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "same_passages": [(p.doc_id, p.start, p.end) for p in ray_built.passages]
            == [(p.doc_id, p.start, p.end) for p in local.passages],
            "same_sentences": [(x.doc_id, x.start, x.end) for x in ray_built.sentences]
            == [(x.doc_id, x.start, x.end) for x in local.sentences],
            "max_vector_difference": float(np.abs(ray_built.passage_vectors - local.passage_vectors).max()),
            "passages": len(ray_built.passages),
        }

        port = config["port"]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = Settings(index_dir=config["index_dir"], source_dir=config["source_dir"], request_timeout_s=120)
        started = time.perf_counter()
        serve.run(build(settings, 2, 2.0), name=APP_NAME, route_prefix="/")
        out["start_s"] = round(time.perf_counter() - started, 1)
        base = f"http://127.0.0.1:{port}"
        handle = serve.get_deployment_handle("Answerer", app_name=APP_NAME)
        replicas = _replicas(handle, 2)
        pids = sorted(replicas)
        out["replica_pids"] = pids
        out["replica_nodes"] = sorted(set(replicas.values()))

        # 1. the answers of the single process, through every route kind
        out["answers"] = [_ask(base, q) for q in config["questions"]]
        chat = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "newsqa", "messages": [{"role": "user", "content": config["questions"][0]}]},
            timeout=60,
        )
        out["chat"] = [chat.status_code, chat.json()]
        with httpx.stream(
            "POST",
            f"{base}/v1/chat/completions",
            json={"model": "newsqa", "stream": True, "messages": [{"role": "user", "content": config["questions"][0]}]},
            timeout=60,
        ) as stream:
            out["stream"] = [stream.status_code, [line for line in stream.iter_lines() if line]]
        out["bad"] = _ask(base, "")
        out["page"] = httpx.get(f"{base}/", timeout=10).status_code

        # 2. a document POSTed to the one writer, followed by both replicas (`eval.cluster.follow`)
        from eval.cluster import follow

        out["follow"] = follow(base)
        out["replica_versions"] = sorted({handle.refresh.remote().result() for _ in range(12)})

        # 3. cancellation reaches the replicas (`api.cluster.Cancellations`): named before a batch runs,
        # and a client that leaves mid-answer (up to 3 tries: its row may finish before the news arrives)
        from api.cluster import CANCELLATIONS

        namespace = next(
            a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"] == CANCELLATIONS
        )
        actor = ray.get_actor(CANCELLATIONS, namespace=namespace)
        ray.get(actor.cancel.remote(["probe-gone"]))
        question = config["questions"][0]
        got = handle.ask_batch.remote([(question, None, (), None, "probe-gone"), (question, None, (), None, "kept")])
        out["cancelled_batch"] = [type(r).__name__ for r in got.result()]

        counts = {}
        for attempt in range(3):
            for _ in range(20):
                info = handle.info.remote().result()
                counts[info["pid"]] = info["cancelled_rows"]
            before = sum(counts.values())
            try:
                httpx.post(f"{base}/v1/ask", json={"question": config["questions"][1]}, timeout=0.3)
            except httpx.TimeoutException:
                pass
            time.sleep(3)
            for _ in range(20):
                info = handle.info.remote().result()
                counts[info["pid"]] = info["cancelled_rows"]
            out["left_mid_answer"] = {"attempts": attempt + 1, "rows_stopped": sum(counts.values()) - before}
            if out["left_mid_answer"]["rows_stopped"]:
                break

        # 4. one replica killed under load: retried or refused with an error body, and it comes back
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(_ask, base, config["questions"][i % len(config["questions"])]) for i in range(24)]
            time.sleep(1.0)
            os.kill(pids[0], signal.SIGKILL)
            out["under_kill"] = [f.result() for f in futures]
        back = None
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 120:  # back: two live replicas again, neither the killed one
            try:
                now = _replicas(handle, 2, tries=10)
            except Exception:  # noqa: BLE001 - routed to the dead replica before Serve noticed
                now = {}
            if len(now) == 2 and pids[0] not in now:
                back = round(time.perf_counter() - t0, 1)
                out["replica_pids_after"] = sorted(now)
                break
            time.sleep(1)
        out["replica_back_s"] = back
        out["after_kill"] = _ask(base, config["questions"][0])
    finally:
        Path(out_path).write_text(json.dumps(out, default=str))
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
