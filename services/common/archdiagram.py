"""The package diagram of the README's "Architecture" section, drawn from the code's own imports.

Every ``import`` of ``services/`` and ``models/`` (module level or inside a function; not those under
``if TYPE_CHECKING:``) is read with ``ast``, so the picture cannot drift from the code. A node is a
service (``services.detector``), a subpackage of one (``services.alerting.association``) and then
also each top-level module of that service (``services.alerting.service``), or one of the model's two halves: the runtime the detector loads (contract, ONNX session) and the training
code. An arrow ``A --> B`` says that A depends on B: some module of A imports one of B, or A imports
a package that does, directly or further down (an arrow that a longer path implies is left out).

``python -m services.common.archdiagram`` prints the Mermaid text (``--write`` updates README.md in
place between the ``<!-- arch:begin -->`` and ``<!-- arch:end -->`` markers); a unit test keeps
them equal. ``import_graph`` is the module-level graph, also used by the packaging test (which
third-party packages each command can reach).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
BEGIN, END = "<!-- arch:begin -->", "<!-- arch:end -->"
ROOTS = ("services", "models")
# Folded into their parent node: generated code, not a design unit.
FOLD = ("services.common.pb",)
# The model's runtime half (what a detector image needs); the rest of models/ is training.
MODEL_RUNTIME = ("models.runtime", "models.contract", "models.exceptions", "models")
MODEL_RUNTIME_NODE = "models.runtime"
# Shared helpers: one node for their top-level modules even when they have subpackages.
SHARED = ("services.common",)
MODEL_TRAINING_NODE = "models.training"


@dataclass
class ModuleImports:
    """What one module imports: project modules (resolved to existing ones) and third-party top names."""

    path: Path
    internal: set[str] = field(default_factory=set)
    third_party: set[str] = field(default_factory=set)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = (
                test.id
                if isinstance(test, ast.Name)
                else test.attr
                if isinstance(test, ast.Attribute)
                else ""
            )
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def parse_file(path: Path, tries: int = 3) -> ast.Module:
    """``ast.parse`` of one source file, tried again on CPython 3.11's spurious ``SystemError``
    ("AST constructor recursion depth mismatch", gh-106905): the AST state is shared between
    threads, so a parse in another thread (a traceback's caret anchors, for one) can upset ours."""
    source = path.read_text()
    for attempt in range(tries):
        try:
            return ast.parse(source, filename=str(path))
        except SystemError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def import_graph(root: Path = REPO_ROOT) -> dict[str, ModuleImports]:
    """module name -> its imports, for every .py file under ``services/`` and ``models/``."""
    files = sorted(p for r in ROOTS for p in (root / r).rglob("*.py") if "node_modules" not in p.parts)
    modules = {_module_name(p, root): ModuleImports(p) for p in files}
    for name, mod in modules.items():
        tree = parse_file(mod.path)
        skip = _type_checking_nodes(tree)
        package = name if mod.path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                top = target.split(".")[0]
                if top in ROOTS:
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        mod.internal.add(target)
                elif top != "__future__" and top not in sys.stdlib_module_names:
                    mod.third_party.add(top)
    return modules


def reachable(graph: dict[str, ModuleImports], start: Iterable[str]) -> set[str]:
    """The project modules that importing ``start`` can load (every import, lazy ones too), with the
    parent packages Python imports on the way."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        todo.extend(graph[name].internal)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return seen


def node_of(module: str, graph: dict[str, ModuleImports]) -> str:
    """The diagram node a module belongs to."""
    if module.split(".")[0] == "models":
        return MODEL_RUNTIME_NODE if module in MODEL_RUNTIME else MODEL_TRAINING_NODE
    for folded in FOLD:
        if module == folded or module.startswith(folded + "."):
            return folded.rpartition(".")[0]
    parts = module.split(".")
    if len(parts) <= 2:
        return module
    service, sub = ".".join(parts[:2]), ".".join(parts[:3])
    if sub in graph and graph[sub].path.name == "__init__.py":
        return sub  # a subpackage of a service is its own node
    split = service not in SHARED and any(
        m.startswith(service + ".") and len(m.split(".")) == 3 and graph[m].path.name == "__init__.py"
        for m in graph
    )
    # a service split into subpackages shows its top-level modules (service, metrics, ...) beside them
    return sub if split else service


def package_edges(graph: dict[str, ModuleImports]) -> tuple[list[str], set[tuple[str, str]]]:
    """(nodes, edges) of the package diagram; a package's ``__init__`` re-exporting from its own
    subpackages adds no edge (its other modules that use them do)."""
    nodes = sorted({node_of(m, graph) for m in graph} - {"services"})
    edges: set[tuple[str, str]] = set()
    for name, mod in graph.items():
        a = node_of(name, graph)
        for target in mod.internal:
            b = node_of(target, graph)
            reexport = mod.path.name == "__init__.py" and b.startswith(a + ".")
            if a != b and b != "services" and not reexport:
                edges.add((a, b))
    return nodes, edges


def cycles(nodes: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (import cycles between packages)."""
    out_edges = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in out_edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for n in nodes:
        if n not in index:
            visit(n)
    return sorted(found)


def reduce_edges(nodes: list[str], edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The transitive reduction: drop A -> C where a longer path A -> B -> ... -> C exists (the
    picture keeps who depends on whom with a third of the arrows). Needs an acyclic graph."""
    succ = {n: {b for a, b in edges if a == n} for n in nodes}

    def reaches_without(a: str, c: str) -> bool:
        seen: set[str] = set()
        todo = [b for b in succ[a] if b != c]
        while todo:
            x = todo.pop()
            if x == c:
                return True
            if x not in seen:
                seen.add(x)
                todo.extend(succ[x])
        return False

    return {(a, c) for a, c in edges if not reaches_without(a, c)}


def _node_id(node: str) -> str:
    return node.replace(".", "_")


def render(root: Path = REPO_ROOT) -> str:
    """The Mermaid flowchart: a box per service with subpackages (and one for models/), arrows
    from importer to imported."""
    graph = import_graph(root)
    nodes, edges = package_edges(graph)
    if not cycles(nodes, edges):
        edges = reduce_edges(nodes, edges)
    boxes: dict[str, list[str]] = {}
    for n in nodes:
        parts = n.split(".")
        boxes.setdefault(".".join(parts[:2]) if parts[0] == "services" else parts[0], []).append(n)
    lines = ["```mermaid", "flowchart LR"]
    for box, members in sorted(boxes.items()):
        if len(members) == 1 and members[0] == box:
            lines.append(f'  {_node_id(box)}["{box}"]')
            continue
        lines.append(f'  subgraph {_node_id(box)}_box ["{box}"]')
        for m in members:
            label = m.rpartition(".")[2] if m != box or box in SHARED else "__init__"
            lines.append(f'    {_node_id(m)}["{label}"]')
        lines.append("  end")
    lines += [f"  {_node_id(a)} --> {_node_id(b)}" for a, b in sorted(edges)]
    lines.append("```")
    return "\n".join(lines)


def write_readme(readme: Path = README) -> bool:
    """Replace the text between the markers; True when README.md changed."""
    text = readme.read_text()
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{readme}: markers {BEGIN} ... {END} not found")
    new = f"{text[:begin]}{BEGIN}\n{render()}\n{text[end:]}"
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.archdiagram", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help="update README.md between the arch markers")
    args = parser.parse_args(argv)
    graph = import_graph()
    found = cycles(*package_edges(graph))
    for group in found:
        print(f"import cycle between packages: {' <-> '.join(group)}", file=sys.stderr)
    if args.write:
        print("README.md updated" if write_readme() else "README.md already current")
    else:
        print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
