"""The packages' layering: each imports only from the layers below it (imports inside functions too).

index (passages, embeddings, the store) < qa (the question-answering stages) < api (HTTP, `qa ask`,
`qa serve`) < eval (benchmarks over the pipeline and the server) < research (one-off benches whose
results are recorded) < train (what builds the shipped models); nothing imports train. `index` imports no other package: the root
of the error tree lives there (`index.errors`), re-exported by `qa.errors`. The `qa` command finds `api` and `eval` through entry points (qa/cli.py).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

ALLOWED = {
    "index": set(),
    "qa": {"index"},
    "api": {"qa", "index"},
    "eval": {"qa", "index", "api"},
    "train": {"qa", "index", "eval", "research"},
    "research": {"qa", "index", "eval"},
}
PACKAGES = set(ALLOWED)


def imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of a project package in ``path``: (line, dotted module).

    Example: ``from qa.errors import X`` inside a function -> (12, "qa.errors")
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m.split(".")[0] in PACKAGES]


def allowed(package: str, module: str) -> bool:
    top = module.split(".")[0]
    return top == package or any(module == a or module.startswith(a + ".") for a in ALLOWED[package])


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_imports_only_the_layers_below_it(package):
    wrong = [
        f"{path.relative_to(ROOT).as_posix()}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imports(path)
        if not allowed(package, module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from api.schemas import AskResponse\n    import eval.metrics\n")
    assert [m for _, m in imports(bad) if not allowed("qa", m)] == ["api.schemas", "eval.metrics"]
    assert not allowed("index", "qa.errors") and not allowed("index", "qa.lang.text")


def test_the_qa_command_gets_ask_serve_and_eval_from_the_packages_above_it():
    from qa import cli

    sub = argparse.ArgumentParser().add_subparsers()
    assert cli.register_plugins(sub) == ["api", "eval"]
    assert {"ask", "serve", "eval"} <= set(sub.choices)
    args = cli.parser().parse_args(["ask", "How many GP practices?", "--json", "--generator", "none"])
    assert args.func.__module__ == "api.cli" and args.json and args.generator == "none"
    assert cli.parser().parse_args(["eval", "squad", "f.json"]).func.__module__ == "eval.cli"
