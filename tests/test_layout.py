"""The package layout: stage sub-packages importing only from the stages before them (the exceptions
named), no import cycle, each module importable on its own, and the tool digest (which decides whether a
node is re-rendered) covering every module and template."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import builder
from builder import resources
from builder.bake import incremental

PACKAGE = Path(builder.__file__).parent
STAGES = ("model", "validation", "plan", "pki", "node", "emit")  # the pipeline's order (README)
SHARED = {"errors", "files", "paths", "parallel", "resources", "yamlio"}  # helpers every stage uses
# Imports against the pipeline's order, each with its reason. A new one needs its own reason here.
BACKWARD = {
    ("builder.validation", "builder.node.airgap"): "the air gap's profile checks, by its seed",
    ("builder.node.airgap", "builder.emit.iso"): "the images seed is an ISO, packed like the node seeds",
    ("builder.pki.secrets.seed_server", "builder.serve.protocol"): "report keys derive from a bundle secret",
    ("builder.pki.secrets.seed_server", "builder.serve.tls"): "the seed server's CA and certificate",
    ("builder.pki.secrets.layout", "builder.serve.tls"): "the seed server's CA and certificate, on disk",
    ("builder.pki.secrets.loading", "builder.serve.tls"): "the same files, read back",
    ("builder.node.cloudinit", "builder.serve.nodefiles"): "the reporter, by its protocol",
    ("builder.node.distribute", "builder.serve.nodefiles"): "the reporter's key and pinned CA, same reason",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The builder modules `name` imports explicitly (at any depth of its code)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    yield f"{source}.{alias.name}"
                elif source in modules:
                    yield source
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in modules)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) - {name} for name, path in modules.items()}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_relative_and_absolute_imports() -> None:
    graph = _graph()
    etcd = graph["builder.node.static_pods.etcd"]
    assert "builder.node.kubeadm_config" in etcd  # from ..kubeadm_config import ...
    assert "builder.plan" in etcd  # from ...plan import ...
    assert "builder.pki.crypto" in graph["builder.check.node_secrets"]  # from ..pki import crypto as pki
    assert "builder.check.findings" in graph["builder.check"]  # from .findings import ...


def _place(module: str) -> tuple[str, int]:
    """(kind, rank): a stage and its rank in the pipeline, a shared helper, or what runs the stages."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return "stage", STAGES.index(parts[1])
    if len(parts) == 2 and parts[1] in SHARED:
        return "shared", -1
    return "top", len(STAGES)  # cli, bake, check, dryrun, serve/: they read every stage


def _backward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in graph.items() for b in targets if _place(b)[1] > _place(a)[1]}


def test_backward_finder_finds_a_late_import() -> None:
    graph = {"builder.plan": {"builder.node.host", "builder.model"}, "builder.files": {"builder.errors"}}
    assert _backward(graph) == {("builder.plan", "builder.node.host")}
    assert _backward({"builder.paths": {"builder.plan"}}) == {("builder.paths", "builder.plan")}


def test_stages_import_only_earlier_stages() -> None:
    assert _backward(_graph()) == set(BACKWARD)


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_every_module_imports_on_its_own() -> None:
    """Whatever is imported first (a test, `python -m`, a worker process), no module needs another to
    have been imported before it."""
    names = sorted(n for n in _modules() if not n.endswith("._schema_batch"))  # run by cloud-init's Python
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m == 'builder' or m.startswith('builder.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


RENDERING_ONLY = ("jinja2", "unittest.mock", "asyncio")
"""Libraries only rendering a node needs (templates, the ISO's pinned clock once used mock): `bake`
imports them when it renders, so that a re-bake that renders nothing does not pay for them."""


def test_the_bake_command_does_not_import_what_only_rendering_needs() -> None:
    code = f"import sys, builder.cli; print([m for m in {RENDERING_ONLY!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_tool_digest_covers_every_module_and_template() -> None:
    sources = incremental.tool_sources()
    paths = {p.resolve() for _, p in sources}
    for name, path in _modules().items():
        assert path.resolve() in paths, name
        if not name.endswith("._schema_batch"):
            importlib.import_module(name)
    loaded = [m for m in sys.modules.values() if (m.__name__ + ".").startswith("builder.")]
    assert {Path(m.__file__).resolve() for m in loaded if m.__file__} <= paths
    templates = resources.templates_dir()
    assert {p.resolve() for p in templates.rglob("*") if p.is_file()} <= paths
    names = [n for n, _ in sources]
    assert len(names) == len(set(names))  # by relative path: the packages hold several __init__.py
    assert "builder/node/__init__.py" in names and "builder/pki/__init__.py" in names


MAX_LINES = 400
LONG_BECAUSE = "long because"  # the sentence a long module's docstring gives its reason in (CONTRIBUTING)


def _too_long(modules: dict[str, Path]) -> set[str]:
    """Modules over MAX_LINES whose docstring does not say why they are long."""
    found = set()
    for name, path in modules.items():
        text = path.read_text()
        if len(text.splitlines()) <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if LONG_BECAUSE not in " ".join(doc.split()).lower():
            found.add(name)
    return found


def test_the_length_rule_sees_a_long_module(tmp_path: Path) -> None:
    body = "x = 1\n" * MAX_LINES
    (tmp_path / "short.py").write_text('"""Short."""\n' + "x = 1\n" * (MAX_LINES - 1))
    (tmp_path / "long.py").write_text('"""Long."""\n' + body)
    (tmp_path / "said.py").write_text('"""A table.\n\nIt is long\nbecause it is one table."""\n' + body)
    found = _too_long({n: tmp_path / f"{n}.py" for n in ("short", "long", "said")})
    assert found == {"long"}


def test_long_modules_say_why() -> None:
    """No module over MAX_LINES lines unless its docstring says why (a sentence with "long because")."""
    assert _too_long(_modules()) == set()
