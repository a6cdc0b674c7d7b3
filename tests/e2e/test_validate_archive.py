"""``eew validate`` end to end on a semi-synthetic archive with a known catalogue.

The archive (``services.validate.testarchive``): two events recorded by six stations (real
recordings placed at travel-time-consistent P times), a third recorded by two stations only (the
alerting needs three: missed), a real-noise stretch without event, two catalogue events outside the
archive (not covered), and one station missing from the inventory. The real broker, ``eew detect``
(shipped ONNX model) and ``eew alert`` run as processes. The report must show what was built in:
statuses, no false alert, first P at the built-in P, latencies consistent with the geometry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from obspy import UTCDateTime

from services.validate import testarchive

pytestmark = pytest.mark.e2e


def _t(iso: str) -> float:
    return float(UTCDateTime(iso).timestamp)


@pytest.fixture(scope="module")
def report(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("validate")
    truth = testarchive.build(base / "in", shared)
    out = base / "out"
    cmd = [sys.executable, "-m", "services.cli", "validate", "--archive", str(base / "in" / "archive"),
           "--stations", str(base / "in" / "stations.csv"), "--catalog", str(base / "in" / "catalog.xml"),
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    print(res.stdout)  # the summary table and the replay rate measured on this machine
    summary = json.loads((out / "summary.json").read_text())
    for row in summary["events"]:  # QuakeML ids smi:eew.test/event/<id>
        row["event_id"] = row["event_id"].rsplit("/", 1)[-1]
    return {"truth": truth, "out": out, "summary": summary, "stderr": res.stderr}


def test_statuses_and_counts_match_what_was_built(report: dict) -> None:
    s, truth = report["summary"], report["truth"]
    assert {e["event_id"]: e["status"] for e in s["events"]} == truth["expected"]
    sm = s["summary"]
    assert (sm["detected_events"], sm["missed_events"], sm["not_covered_events"]) == (2, 1, 2)
    assert (sm["true_alerts"], sm["duplicate_alerts"], sm["false_alerts"]) == (2, 0, 0)
    assert sm["precision"] == 1.0 and sm["recall"] == pytest.approx(2 / 3, abs=1e-3)
    ev3 = next(e for e in s["events"] if e["event_id"] == "ev3")
    assert ev3["reasons"] == "too few stations recorded it" and "the alerting needs 3" in ev3["note"]
    assert sm["missed_by_reason"] == {"too few stations recorded it": 1}
    assert s["status"][0].startswith("Run status: OK")


def test_first_p_and_latencies_match_the_geometry(report: dict) -> None:
    """First P = the earliest built-in P among stations with coordinates; latency after origin minus
    latency after first P = that P's travel time; the alert comes within seconds of the first P."""
    s, truth = report["summary"], report["truth"]
    drop = set(truth["inventory_drop"])
    for ev in truth["events"][:2]:
        row = next(e for e in s["events"] if e["event_id"] == ev["event_id"])
        built = min(_t(v["p_time"]) for k, v in ev["stations"].items() if k not in drop)
        origin = _t(ev["origin_time"])
        assert _t(row["first_p_time"]) == pytest.approx(built, abs=0.02)
        assert row["first_p_source"] == "catalogue pick"
        assert 0.0 < row["latency_after_first_p_s"] <= 8.0
        assert row["latency_after_origin_s"] - row["latency_after_first_p_s"] == pytest.approx(built - origin, abs=0.02)
        assert abs(row["alert_first_p_error_s"]) <= 1.5
        assert row["alert_stations"] >= 3
        if row["location_error_km"] is not None:
            assert row["location_error_km"] < 50.0
    assert s["summary"]["pick_abs_error_s"]["median"] <= 0.5


def test_stations_inventory_gap_and_noise(report: dict) -> None:
    """The station left out of the inventory is named; every stream fully scored; noise hours counted."""
    s = report["summary"]
    assert s["summary"]["stations_not_in_inventory"] == ["XX.S06"]
    assert any("XX.S06" in w and "not in the inventory" in w for w in s["warnings"])
    rows = {r["stream"]: r for r in s["stations"]}
    assert len(rows) == 6 and rows["XX.S06..HH?"]["in_inventory"] is False
    for r in rows.values():
        assert r["scored_hours"] >= 0.98 * r["data_hours"], r  # nothing lost at the gaps between segments
    assert s["summary"]["station_noise_hours"] > 0.05


def test_run_is_order_independent_and_reports_its_rate(report: dict) -> None:
    """No score reached the alerting out of event-time order, and re-associating gives the same alerts."""
    run = report["summary"]["run"]
    assert run["alerting_scores_late"] == 0
    assert run["reassociation_identical"] is True, run["reassociation_differences"]
    assert run["replay_rate_data_hours_per_wall_minute"] > 0
    assert "data h/wall min" in report["stderr"]  # the progress line
    md = (report["out"] / "report.md").read_text()
    assert "data hours per wall minute" in md.split("## Run")[1]


def test_report_files_and_detections(report: dict) -> None:
    from obspy import read_events

    out = report["out"]
    for name in ("report.md", "report.html", "events.csv", "alerts.csv", "stations.csv", "picks.csv",
                 "versions.csv", "false_triggers.csv", "plots/map.png", "plots/latency.png",
                 "plots/alert_time_vs_magnitude.png", "plots/location_errors.png", "plots/false_triggers.png"):
        assert (out / name).is_file(), name
    for eid in ("ev1", "ev2", "ev3"):
        assert len(list((out / "plots").glob(f"event_*{eid}.png"))) == 1, eid
    cat = read_events(str(out / "detections.xml"))
    alerts = [e for e in cat if not str(e.resource_id).endswith("station-picks")]
    assert len(alerts) == 2 and all(len(e.picks) >= 3 for e in alerts)
    picks = [p for e in cat for p in e.picks]
    # every station trigger is a pick (an alert's own, else one of the station-picks event; a re-trigger
    # without a P pick of its own, e.g. on S, is a pick at its onset without a phase hint)
    assert len(picks) >= report["summary"]["summary"]["station_triggers"] > 0
    others = next(e for e in cat if str(e.resource_id).endswith("station-picks"))
    assert all(float(p.extra["probability"]["value"]) > 0.5 for p in others.picks)
    versions = (out / "versions.csv").read_text().splitlines()
    assert len(versions) - 1 == report["summary"]["summary"]["alert_versions"]
    assert all(",alert message," in v or ",association replay," in v for v in versions[1:])


@pytest.fixture(scope="module")
def report_in_process(report: dict) -> dict:
    """The same archive with ``--mode in-process`` (the cores in one process, no broker)."""
    base = report["out"].parent
    out = base / "out-in-process"
    cmd = [sys.executable, "-m", "services.cli", "validate", "--archive", str(base / "in" / "archive"),
           "--stations", str(base / "in" / "stations.csv"), "--catalog", str(base / "in" / "catalog.xml"),
           "--out", str(out), "--mode", "in-process", "--plots", "false"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return {"out": out, "summary": json.loads((out / "summary.json").read_text())}


def test_in_process_mode_gives_the_services_results(report: dict, report_in_process: dict) -> None:
    """--mode in-process scores and alerts exactly as the services did: same statuses, station
    triggers and picks, alert versions and pick times; only the transport figures differ."""
    a, b = report["summary"], report_in_process["summary"]
    assert b["inputs"]["mode"] == "in-process" and a["inputs"]["mode"] == "services"
    keys = ("detected_events", "missed_events", "true_alerts", "false_alerts", "alert_versions", "scores",
            "station_triggers", "station_p_detections", "pick_abs_error_s")
    assert {k: b["summary"][k] for k in keys} == {k: a["summary"][k] for k in keys}
    cols = ("status", "first_p_time", "alert_stations", "location_error_km", "latency_after_origin_s")
    ev = lambda s: {e["event_id"].rsplit("/", 1)[-1]: tuple(e[c] for c in cols) for e in s["events"]}  # noqa: E731
    assert ev(b) == ev(a)
    picks = lambda out: sorted((out / "picks.csv").read_text().splitlines())  # noqa: E731
    assert picks(report_in_process["out"]) == picks(report["out"])
    md = (report_in_process["out"] / "report.md").read_text()
    assert "--mode in-process" in md and "not measured" in md
