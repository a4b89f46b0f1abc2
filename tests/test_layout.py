"""The layout's promises (docs/decisions/0018): the engine imports no Kafka client, every
package directory is shipped in the wheel."""
from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
KAFKA = {"confluent_kafka", "faust", "aiokafka", "kafka", "streams"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_engine_imports_no_kafka_client_and_nothing_from_streams():
    modules = sorted((ROOT / "online_models").rglob("*.py"))
    assert len(modules) > 20
    offending = {str(p.relative_to(ROOT)): sorted(_imported_roots(p) & KAFKA) for p in modules}
    assert {p: r for p, r in offending.items() if r} == {}


def test_every_package_directory_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for top in ("online_models", "streams") for p in (ROOT / top).rglob("__init__.py")}
    assert found and found <= listed, sorted(found - listed)
