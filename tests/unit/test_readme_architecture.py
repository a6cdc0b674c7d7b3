"""README's package diagram is the one the code's imports give, and the packages import no cycle."""

from pathlib import Path

from services.common.archdiagram import BEGIN, END, cycles, import_graph, package_edges, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_architecture_diagram_is_current() -> None:
    text = README.read_text()
    embedded = text[text.index(BEGIN + "\n") + len(BEGIN) + 1 : text.index("\n" + END)]
    assert embedded == render(), "regenerate: python -m services.common.archdiagram --write"


def test_no_import_cycle_between_packages() -> None:
    found = cycles(*package_edges(import_graph()))
    assert not found, f"packages that import each other (python -m services.common.archdiagram): {found}"


def test_the_graph_sees_lazy_and_relative_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    """An import inside a function is a dependency too; a relative one resolves; one under
    `if TYPE_CHECKING:` (annotations only) is not a dependency."""
    files = {
        "services/__init__.py": "",
        "services/x/__init__.py": "",
        "services/x/core.py": (
            "from typing import TYPE_CHECKING\n"
            "from . import util\n"
            "if TYPE_CHECKING:\n    from services.y.big import Big\n"
            "def f():\n    import numpy\n    from services.z import helper\n"
        ),
        "services/x/util.py": "",
        "services/y/__init__.py": "",
        "services/y/big.py": "",
        "services/z/__init__.py": "",
        "services/z/helper.py": "",
        "models/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["services.x.core"].internal == {"services.x.util", "services.z.helper"}
    assert graph["services.x.core"].third_party == {"numpy"}
    nodes, edges = package_edges(graph)
    assert edges == {("services.x", "services.z")} and "services.y" in nodes
