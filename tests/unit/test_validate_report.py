"""Report files of ``eew validate``: deterministic apart from the marked run section, readable QuakeML.

The same scoring result written twice with different wall-clock figures must give byte-identical
CSV, QuakeML and PNG files, the same Markdown/HTML up to the "Run" section and the same
summary.json apart from its ``run`` field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.domain import Station
from services.common.inventory import StationInventory
from services.pipeline.run import RunOutput
from services.validate.core import (
    NS,
    AlertStation,
    AlertVersion,
    CatalogEvent,
    ScoringConfig,
    StreamCoverage,
    score,
)
from services.validate.inputs import ArchiveIndex
from services.validate.report import ReportInputs, summary_lines, write_report

T0 = 1_700_000_000 * NS


def _result():  # noqa: ANN202
    inv = StationInventory([Station("XX", "A", "", 0.0, 0.1), Station("XX", "B", "", 0.0, 0.2),
                            Station("XX", "C", "", 0.1, 0.0)])
    cov = [StreamCoverage(f"XX.{s}..HH?", ((T0, T0 + 300 * NS),)) for s in "ABC"]
    cat = [CatalogEvent("ev1", T0 + 100 * NS, 0.0, 0.0, 5.0, 3.2, "ML"),
           CatalogEvent("ev2", T0 + 200 * NS, 0.0, 0.0, 5.0, 2.0, "ML"),
           CatalogEvent("far", T0 + 9000 * NS, 1.0, 1.0, 5.0, None, "")]
    p = T0 + 102 * NS
    st = tuple(AlertStation("XX", s, "", p + i * NS, 0.99, 0.0, 0.1 * (i + 1)) for i, s in enumerate("AB"))
    st3 = (*st, AlertStation("XX", "C", "", p, 0.97, 0.1, 0.0))
    alerts = [
        AlertVersion("a1", 1, "NEW", p, p, 0.8, st, created_time_ns=5, latest_ingest_time_ns=1),
        AlertVersion("a1", 2, "UPDATE", T0 + 100 * NS, p, 0.9, st3, has_location=True, latitude=0.01,
                     longitude=0.02, depth_km=7.0, location_uncertainty_km=4.0, has_magnitude=True,
                     magnitude=3.0, magnitude_type="Mpd"),
        AlertVersion("f1", 1, "NEW", T0 + 250 * NS, T0 + 250 * NS, 0.7, st),
        AlertVersion("f1", 2, "CANCEL", T0 + 250 * NS, T0 + 250 * NS, 0.0, st),
    ]
    res = score(cat, cov, inv, [], alerts, ScoringConfig(), {("a1", 1): p + 3 * NS},
                warnings=["a warning for the report"])
    return res, alerts


def _write(out: Path, wall: dict) -> None:
    res, alerts = _result()
    run = RunOutput([], alerts, {}, wall=wall)
    inputs = ReportInputs(["arch/"], "stations.csv", "cat.csv", 3, 1, ["--max-lateness-s", "600"])
    write_report(out, res, inputs, run, ArchiveIndex(paths=["arch/"]), [], plots=True)


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    _write(a, {"processing_s": 12.0, "startup_s": 1.0, "wall_total_s": 20.0})
    _write(b, {"processing_s": 30.0, "startup_s": 3.5, "wall_total_s": 41.0})
    return a, b


@pytest.mark.slow  # two full reports with plots: ~20 s
def test_every_file_is_written(two_reports: tuple[Path, Path]) -> None:
    a, _ = two_reports
    for name in ("report.md", "report.html", "summary.json", "events.csv", "alerts.csv", "stations.csv",
                 "picks.csv", "detections.xml", "plots/map.png", "plots/latency.png", "plots/event_ev1.png"):
        assert (a / name).is_file() and (a / name).stat().st_size > 0, name
    assert not (a / "plots" / "event_far.png").exists()  # not covered: nothing to draw


@pytest.mark.slow  # two full reports with plots: ~20 s
def test_same_inputs_same_files_apart_from_the_run_section(two_reports: tuple[Path, Path]) -> None:
    a, b = two_reports
    for name in ("events.csv", "alerts.csv", "stations.csv", "picks.csv", "detections.xml", "plots/map.png",
                 "plots/latency.png", "plots/event_ev1.png", "plots/event_ev2.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name, marker in (("report.md", "## Run"), ("report.html", "<h2>Run")):
        ta, tb = (a / name).read_text(), (b / name).read_text()
        assert ta != tb  # the wall-clock figures differ ...
        assert ta.split(marker)[0] == tb.split(marker)[0]  # ... only in the marked section
    ja, jb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert ja.pop("run") != jb.pop("run")
    assert ja == jb


@pytest.mark.slow  # two full reports with plots: ~20 s
def test_report_content(two_reports: tuple[Path, Path]) -> None:
    a, _ = two_reports
    md = (a / "report.md").read_text()
    assert "| detected | 1 |" in md and "| missed | 1 |" in md
    assert "a warning for the report" in md
    assert "Replay rate" in md.split("## Run")[1]
    s = json.loads((a / "summary.json").read_text())
    assert s["summary"]["not_covered_events"] == 1 and s["summary"]["false_alerts_cancelled"] == 1
    ev1 = next(e for e in s["events"] if e["event_id"] == "ev1")
    assert ev1["latency_after_origin_s"] == pytest.approx(5.0) and ev1["updates"] == 1
    assert ev1["location_error_km"] == pytest.approx(2.49, abs=0.01)
    assert ev1["magnitude_error"] == pytest.approx(-0.2)
    html = (a / "report.html").read_text()
    # self-contained: map, latency, 4 performance plots, 2 events
    assert html.count('src="data:image/png;base64,') == 8
    assert "src=\"http" not in html and "<link" not in html


@pytest.mark.slow  # two full reports with plots: ~20 s
def test_detections_quakeml_is_readable(two_reports: tuple[Path, Path]) -> None:
    """ObsPy reads the detections back: one event per alert, picks, origin, magnitude, cancel flag."""
    from obspy import read_events

    cat = read_events(str(two_reports[0] / "detections.xml"))
    by = {str(e.resource_id).rsplit("/", 1)[-1]: e for e in cat}
    assert set(by) == {"a1", "f1", "station-picks"}
    a1 = by["a1"]
    assert len(a1.picks) == 3 and {p.phase_hint for p in a1.picks} == {"P"}
    o = a1.preferred_origin()
    assert (o.latitude, o.longitude, o.depth) == pytest.approx((0.01, 0.02, 7000.0))
    assert a1.preferred_magnitude().mag == pytest.approx(3.0)
    assert len(o.arrivals) == 3
    assert by["f1"].event_type == "not existing"
    assert by["f1"].origins == []  # the alert carries no location: none is made up
    assert by["station-picks"].event_type == "not reported"


def test_summary_lines_for_the_terminal() -> None:
    res, alerts = _result()
    lines = summary_lines(res, RunOutput([], alerts, {}, wall={"processing_s": 60.0}))
    assert any(line.startswith("precision") for line in lines)
    assert "data h / wall min" in lines[-1]


def test_detections_carry_every_station_pick_without_an_alert(tmp_path: Path) -> None:
    """No alert at all: the station triggers are still in detections.xml, each a P pick with the
    detector's highest probability (eew:probability) and the same file for the same inputs."""
    from obspy import read_events

    from services.alerting.association import ScoreRecord
    from services.validate.quakeml import write_detections

    inv = StationInventory([Station("XX", "A", "", 0.0, 0.1)])
    cov = [StreamCoverage("XX.A..HH?", ((T0, T0 + 60 * NS),))]
    pick = T0 + 20 * NS + NS // 4
    sc = [ScoreRecord("XX", "A", "", "HH", T0 + (k - 1) * NS, T0 + k * NS, 0.97 if k in (21, 22, 23) else 0.01,
                      k in (21, 22, 23), p_onset_ns=pick if k in (21, 22, 23) else None) for k in range(1, 61)]
    res = score([], cov, inv, sc, [], ScoringConfig())
    write_detections(tmp_path / "a.xml", res, sc)
    write_detections(tmp_path / "b.xml", res, sc)
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()
    cat = read_events(str(tmp_path / "a.xml"))
    assert len(cat) == 1 and cat[0].event_type == "not reported"
    (p,) = cat[0].picks
    assert p.time.ns == pick and p.phase_hint == "P" and p.waveform_id.get_seed_string() == "XX.A..HHZ"
    assert float(p.extra["probability"]["value"]) == pytest.approx(0.97)


def test_detections_retrigger_without_p_pick_is_an_onset_pick(tmp_path: Path) -> None:
    """A re-trigger (S, coda) whose windows still carry the first trigger's P is not that P again:
    it is its own pick at the shared rule's coarse P (the start of its triggering window), without a
    phase hint, so every station trigger has a pick. (The re-trigger lasts 2 s: the shared rule
    retracts shorter ones, which the old validate rule counted.)"""
    from obspy import read_events

    from services.alerting.association import ScoreRecord
    from services.validate.quakeml import write_detections

    inv = StationInventory([Station("XX", "A", "", 0.0, 0.1)])
    cov = [StreamCoverage("XX.A..HH?", ((T0, T0 + 60 * NS),))]
    pick, on = T0 + 20 * NS + NS // 4, {21, 22, 23, 31, 32, 33}
    sc = [ScoreRecord("XX", "A", "", "HH", T0 + (k - 1) * NS, T0 + k * NS, 0.97 if k in on else 0.01,
                      k in on, p_onset_ns=pick if k > 20 else None) for k in range(1, 61)]
    res = score([], cov, inv, sc, [], ScoringConfig())
    assert res.summary["station_triggers"] == 2
    write_detections(tmp_path / "a.xml", res, sc)
    picks = sorted(read_events(str(tmp_path / "a.xml"))[0].picks, key=lambda p: p.time)
    assert [(p.time.ns, p.phase_hint) for p in picks] == [(pick, "P"), (T0 + 30 * NS, None)]
    assert "no P pick: trigger onset" in picks[1].comments[0].text


def test_report_states_the_detector_resamplers_look_ahead() -> None:
    """The report's definition of alert time names the look-ahead it excludes, as the detector has it."""
    from services.common.streams import resample_ratio
    from services.detector.resample import latency_s
    from services.validate.report import RESAMPLER_LOOKAHEAD_S

    for hz, s in RESAMPLER_LOOKAHEAD_S.items():
        ratio = resample_ratio(hz, 100.0)
        assert not isinstance(ratio, str)
        assert abs(latency_s(hz, *ratio) - s) < 1e-9, hz
