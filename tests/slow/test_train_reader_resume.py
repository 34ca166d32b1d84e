"""`python -m train.reader` resumes a stopped run from its last checkpoint and ends where an unbroken
run ends: the same weights, bit for bit (issue 27 §3: a CPU run can outlast a working session)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def _squad(path, titles):  # noqa: ANN001
    """A small SQuAD 2.0 file: per article two paragraphs, answerable and unanswerable questions."""
    data = []
    for n, title in enumerate(titles):
        paragraphs = []
        for k in range(2):
            context = (
                f"{title} opened its {k + 1}th library in {1900 + n * 7 + k}. The mayor, Ann Lee {n}, cut the ribbon."
            )
            year = str(1900 + n * 7 + k)
            qas = [
                {
                    "id": f"{n}-{k}-a",
                    "question": f"When did {title} open its {k + 1}th library?",
                    "answers": [{"text": year, "answer_start": context.index(year)}],
                    "is_impossible": False,
                },
                {"id": f"{n}-{k}-b", "question": f"Who closed the {title} zoo?", "answers": [], "is_impossible": True},
            ]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": title, "paragraphs": paragraphs})
    path.write_text(json.dumps({"data": data}), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    train = _squad(tmp_path / "train.json", [f"Town{n}" for n in range(6)])
    dev = _squad(tmp_path / "dev.json", ["Alpha", "Beta", "Gamma"])
    return train, dev


def _args(files, out):  # noqa: ANN001
    train, dev = files
    return [
        *("--train-file", str(train), "--dev-file", str(dev), "--out", str(out)),
        *("--epochs", "2", "--batch-size", "4", "--max-length", "64", "--stride", "16", "--lr", "1e-4"),
        *("--val-size", "4", "--checkpoint-every", "2", "--seed", "3", "--device", "cpu", "--no-bf16"),
    ]


def _weights(folder):  # noqa: ANN001
    from safetensors.torch import load_file

    return load_file(str(folder / "final" / "model.safetensors"))


def test_a_stopped_run_resumes_and_ends_where_an_unbroken_one_ends(files, tmp_path, monkeypatch):
    import train.reader as reader

    assert reader.main(_args(files, tmp_path / "whole")) == 0
    whole = _weights(tmp_path / "whole")
    stats = json.loads((tmp_path / "whole" / "data_stats.json").read_text())
    assert stats["features"] >= 8  # more than one epoch's worth of steps to stop in

    real_step, calls = reader.optimizer_step, {"n": 0}

    def stopping_step(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 4:  # killed during step 4: the checkpoint of step 2 is the last
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(reader, "optimizer_step", stopping_step)
    with pytest.raises(KeyboardInterrupt):
        reader.main(_args(files, tmp_path / "split"))
    assert not (tmp_path / "split" / "final").exists()
    assert torch.load(tmp_path / "split" / "checkpoint" / "state.pt", weights_only=False)["step"] == 2
    monkeypatch.setattr(reader, "optimizer_step", real_step)
    assert reader.main(_args(files, tmp_path / "split")) == 0

    resumed = _weights(tmp_path / "split")
    assert resumed.keys() == whole.keys()
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
    logged = [json.loads(line) for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged if "val_at_0" in r] == [1.0, 2.0]  # each epoch validated once

    # The finished run again only re-saves it; with another recipe it refuses to resume from it.
    assert reader.main(_args(files, tmp_path / "split")) == 0
    torch.testing.assert_close(_weights(tmp_path / "split")["qa_outputs.weight"], whole["qa_outputs.weight"])
    with pytest.raises(SystemExit, match="lr"):
        reader.main([*_args(files, tmp_path / "split"), "--lr", "5e-2"])
    with pytest.raises(SystemExit):
        reader.main([*_args(files, tmp_path / "other"), "--checkpoint-every", "0"])
