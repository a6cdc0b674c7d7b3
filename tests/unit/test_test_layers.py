"""Every test file of a layer carries its layer's marker, so `-m integration` / `-m "not e2e"` select
whole layers (pyproject.toml registers the markers; `make test-fast` deselects `slow`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.common.archdiagram import parse_file

TESTS = Path(__file__).resolve().parents[1]
# folder -> markers each of its test files must declare in a module-level `pytestmark`
LAYERS = {"integration": {"integration"}, "faults": {"integration"}, "e2e": {"e2e"}}


def module_markers(path: Path) -> set[str]:
    """Names of the `pytest.mark.X` in the module's `pytestmark = ...` (one marker or a list)."""
    for node in parse_file(path).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return {
                n.attr
                for n in ast.walk(node.value)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Attribute)
                and n.value.attr == "mark"
            }
    return set()


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_file_of_a_layer_has_its_marker(layer: str) -> None:
    files = sorted((TESTS / layer).glob("test_*.py"))
    assert files, layer
    missing = [f.name for f in files if not LAYERS[layer] <= module_markers(f)]
    assert not missing, (
        f"tests/{layer}: add `pytestmark = pytest.mark.{'/'.join(LAYERS[layer])}` to {missing}"
    )
