"""Who may import whom around validation (issue 18), read from the code's imports (``archdiagram``):
validate uses the shared domain (``services.common``), the alerting's association and formats and
the test-and-replay helpers (``services.pipeline``), never a service's internals or the demo; the
demo is a thin user of ``services.pipeline``; no service imports the pipeline, the demo or validate."""

from __future__ import annotations

from services.common.archdiagram import import_graph

GRAPH = import_graph()
VALIDATE_MAY_USE = ("services.validate", "services.common", "services.alerting.association",
                    "services.alerting.formats", "services.pipeline")
SERVICES = ("services.ingest", "services.detector", "services.alerting", "services.broker", "services.dashboard")
TOOLS = ("services.pipeline", "services.demo", "services.validate")


def _imports(prefix: str) -> dict[str, set[str]]:
    return {m: mi.internal for m, mi in GRAPH.items() if m == prefix or m.startswith(prefix + ".")}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_validate_uses_domain_association_formats_and_pipeline_only() -> None:
    bad = {m: sorted(t for t in ts if not _under(t, VALIDATE_MAY_USE))
           for m, ts in _imports("services.validate").items()}
    assert not {m: ts for m, ts in bad.items() if ts}


def test_demo_is_a_thin_user_of_the_pipeline() -> None:
    used = set().union(*_imports("services.demo").values())
    assert not any(_under(t, ("services.ingest", "services.detector", "services.validate")) for t in used)
    assert any(_under(t, ("services.pipeline",)) for t in used)


def test_no_service_imports_the_tools() -> None:
    bad = {m: sorted(t for t in ts if _under(t, TOOLS))
           for p in SERVICES for m, ts in _imports(p).items()}
    assert not {m: ts for m, ts in bad.items() if ts}
