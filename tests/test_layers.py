"""The import picture of docs/architecture.md, checked: every arrow runs down.

Each module's imports are read from its source (at module level and inside functions alike),
so a lazy import that runs back up fails here as surely as one at the top of the file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("jobvisor", "api_gateway", "supervisor", "drivers", "agent", "job_cmd")
CLI = "jobvisor.cli"

# what each layer may import among the project's own packages ("jobvisor" is the ground,
# jobvisor.cli excluded: only the CLI itself imports the CLI)
ALLOWED: dict[str, set[str]] = {
    "jobvisor": {"jobvisor"},
    "job_cmd": {"jobvisor", "job_cmd"},
    "agent": {"jobvisor", "job_cmd", "agent"},
    "drivers": {"jobvisor", "drivers"},
    "api_gateway": {"jobvisor", "api_gateway"},
    "supervisor": {"jobvisor", "drivers", "supervisor"},
    CLI: set(PACKAGES) | {CLI},
}


def layer_of(module: str) -> str:
    if module == CLI or module.startswith(CLI + ".") or module == "jobvisor.__main__":
        return CLI
    return module.split(".")[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)  # `from jobvisor import cli`
    return {name for name in names if name.split(".")[0] in PACKAGES}


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def arrows_up(path: Path) -> list[str]:
    module = module_name(path)
    layer = layer_of(module)
    wrong = []
    for name in imported(path, module):
        target = layer_of(name)
        if target == CLI and layer != CLI:
            wrong.append(name)
        elif target not in ALLOWED[layer]:
            wrong.append(name)
    return sorted(wrong)


def test_the_tree_has_modules_to_check() -> None:
    assert len(modules()) > 50


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_import_runs_down(path: Path) -> None:
    assert arrows_up(path) == [], f"{module_name(path)} imports a layer above it or beside it"


def test_the_checker_sees_an_arrow_up(tmp_path, monkeypatch) -> None:
    """A check that cannot fail is no check: a ground module importing the supervisor, a
    driver importing it lazily, and the gateway importing the CLI are all caught."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    cases = {
        "jobvisor/bad.py": "from supervisor.core import Supervisor\n",
        "drivers/bad.py": "def f():\n    import supervisor.jobs\n",
        "api_gateway/bad.py": "from jobvisor import cli\n",
        "agent/bad.py": "from ..supervisor import core\n",
    }
    for rel, source in cases.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        assert arrows_up(path), rel
