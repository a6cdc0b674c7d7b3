"""The alerting's packages keep their layering (read from the source's imports, nothing run):
association (pure science) <- formats (alert JSON, CAP, QuakeML, signing) <- dispatch (outbox,
delivery, senders, subscriber API) <- service (wiring)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.common.archdiagram import parse_file

ROOT = Path(__file__).resolve().parents[2]
ALERTING = ROOT / "services" / "alerting"

# What each package's modules may import from this repository (prefixes), besides their own package.
ALLOWED = {
    "association": ("services.common.",),
    "formats": ("services.alerting.association", "services.alerting.exceptions", "services.common."),
    "dispatch": (
        "services.alerting.association",
        "services.alerting.formats",
        "services.alerting.exceptions",
        "services.alerting.metrics",
        "services.common.",
    ),
}
# Third-party packages the pure association core may use (pydantic for its settings model,
# services.common.settings.CoreModel); the station files are read by services.common.inventory.
ASSOCIATION_THIRD_PARTY = {"numpy", "scipy", "pydantic"}


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(parse_file(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_lower_layers(package: str) -> None:
    own = f"services.alerting.{package}"
    bad = []
    for path in sorted((ALERTING / package).glob("*.py")):
        for mod in _imports(path):
            if mod.startswith(("services.", "models.")) and not (
                mod == own or mod.startswith(own + ".") or mod.startswith(ALLOWED[package])
            ):
                bad.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_association_is_pure() -> None:
    """No Kafka, HTTP, database, protobuf or pydantic-settings in the association core."""
    import sys

    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in sorted((ALERTING / "association").glob("*.py")):
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top in stdlib or top in ("services", "__future__") or top in ASSOCIATION_THIRD_PARTY:
                continue
            bad.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not bad, "the association core imports I/O or service libraries:\n" + "\n".join(bad)


def test_no_flat_modules_left() -> None:
    """The old flat layout is gone: only the service's own modules sit beside the packages."""
    flat = sorted(p.name for p in ALERTING.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "exceptions.py", "metrics.py", "offsets.py", "service.py"] or (
        flat == ["__init__.py", "__main__.py", "exceptions.py", "metrics.py", "offsets.py", "service.py", "settings.py"]
    ), flat
