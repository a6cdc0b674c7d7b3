"""The shipped Prometheus configuration: promtool checks, rule unit tests, and metric names that exist.

promtool comes with Debian's `prometheus` package; without it those tests skip with the reason.
The metric-name test needs no binary: every `eew_*` series used by the rules and the Grafana
dashboard must be exported by one of the services' metric bundles (services/*/metrics.py), so a
renamed metric breaks this test instead of silently emptying a panel or muting an alert.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULES_TEST = PROM_DIR / "rules_test.yml"
SCRAPE_CONFIG = PROM_DIR / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "eew.json"

# Series from outside the project that the rules and dashboard use on purpose.
EXTERNAL_SERIES = {"up", "kafka_consumergroup_lag"}

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: apt-get install -y --no-install-recommends prometheus")
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules() -> None:
    """rules.yml parses and every expression is valid PromQL."""
    res = _run("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_rule_unit_tests() -> None:
    """The alert rules fire (and stay quiet) as rules_test.yml specifies."""
    res = _run("test", "rules", RULES_TEST.name, cwd=PROM_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_check_rendered_scrape_config(tmp_path: Path) -> None:
    """The compose scrape config is valid once its container rule path points at the repository's rules."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"], "compose mounts rules.yml there"
    config["rule_files"] = [str(RULES)]
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(yaml.safe_dump(config, sort_keys=False))
    res = _run("check", "config", str(rendered))
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert {"eew-ingest", "eew-detector", "eew-alerting"} <= jobs


def exported_series() -> dict[str, str]:
    """Every sample name the services' metric bundles can export -> the bundle that exports it."""
    names: dict[str, str] = {}
    for path in sorted((REPO / "services").glob("*/metrics.py")):
        module = importlib.import_module(f"services.{path.parent.name}.metrics")
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not cls_name.endswith("Metrics"):
                continue
            registry = CollectorRegistry()
            cls(registry)
            for family in registry.collect():
                for suffix in SUFFIXES.get(family.type, ("",)):
                    names[family.name + suffix] = cls_name
    return names


def _eew_names(expr: str) -> set[str]:
    """Metric names (eew_*, plus the external ones) referenced by a PromQL expression."""
    found = set(re.findall(r"(?<![\w:])(eew_[a-z0-9_]+)", expr))
    found |= {n for n in EXTERNAL_SERIES if re.search(rf"(?<![\w:]){n}(?![\w:])", expr)}
    return found


def _rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_metric_bundles_found() -> None:
    """The three services' bundles are discovered (guards the name test against finding nothing)."""
    owners = set(exported_series().values())
    assert {"IngestMetrics", "DetectorMetrics", "AlertingMetrics"} <= owners, owners


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_exported(source: str) -> None:
    """Each eew_* name in the rules / the dashboard is one a service really exports."""
    exported = exported_series()
    exprs = _rule_exprs() if source == "rules" else _dashboard_exprs()
    assert exprs
    missing = {
        (where, name)
        for where, expr in exprs
        for name in _eew_names(expr)
        if name not in exported and name not in EXTERNAL_SERIES
    }
    assert not missing, f"metrics used in {source} but exported by no service: {sorted(missing)}"


def test_recorded_names_used_are_defined() -> None:
    """Recording-rule names (eew:...) used in alerts or panels are defined in rules.yml."""
    recorded = {
        r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r
    }
    used = {m for _, e in _rule_exprs() + _dashboard_exprs() for m in re.findall(r"\beew:[a-z0-9_:]+", e)}
    assert used <= recorded, sorted(used - recorded)
