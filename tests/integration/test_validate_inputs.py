"""``eew validate`` on bad inputs: clear messages, and a report for what is valid.

No pipeline runs here: an archive without usable data is reported without replaying anything,
unusable arguments stop with exit code 2 before anything is started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.validate.__main__ import main
from services.validate.testarchive import write_quakeml

pytestmark = pytest.mark.integration

STATIONS = "network,station,location,latitude,longitude,elevation_m\nXX,S01,,37.8,-122.1,0\n"


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "archive").mkdir()
    (tmp_path / "stations.csv").write_text(STATIONS)
    write_quakeml(tmp_path / "catalog.xml")
    return {"archive": tmp_path / "archive", "stations": tmp_path / "stations.csv",
            "catalog": tmp_path / "catalog.xml", "out": tmp_path / "out"}


def _argv(p: dict[str, Path]) -> list[str]:
    return [a for k, v in p.items() for a in (f"--{k}", str(v))] + ["--plots", "false"]


def test_empty_archive_still_gives_a_report(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """No data: nothing replayed, every catalogue event 'not covered' (not missed), the reason stated;
    the run fails (exit 1): no packet could be scored, said first in the report."""
    (inputs["archive"] / "notes.mseed").write_text("no waveforms here" * 40)
    assert main(_argv(inputs)) == 1
    err = capsys.readouterr().err
    assert "no usable data" in err and "notes.mseed" in err and "RUN FAILED" in err
    assert "no packet could be scored" in err
    s = json.loads((inputs["out"] / "summary.json").read_text())
    assert s["summary"]["catalog_events"] == 5
    assert s["summary"]["not_covered_events"] == 5 and s["summary"]["missed_events"] == 0
    assert s["summary"]["recall"] is None and s["summary"]["alert_events"] == 0
    assert any("not readable miniSEED" in w for w in s["warnings"])
    md = (inputs["out"] / "report.md").read_text()
    assert md.splitlines()[2].startswith("- RUN FAILED: no packet could be scored")
    assert "| covered by the archive | 0 (5 not covered) |" in md
    assert {e["status"] for e in s["events"]} == {"not covered"}


def test_nonexistent_archive_path(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    inputs["archive"] = inputs["archive"] / "missing"
    assert main(_argv(inputs)) == 1
    s = json.loads((inputs["out"] / "summary.json").read_text())
    assert any("no files found" in w for w in s["warnings"])


@pytest.mark.parametrize("flag", ["archive", "stations", "catalog", "out"])
def test_missing_argument(inputs: dict[str, Path], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    del inputs[flag]
    assert main(_argv(inputs)) == 2
    assert f"missing --{flag}" in capsys.readouterr().err


def test_unreadable_catalogue_and_inventory(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    inputs["catalog"].write_text("<broken")
    assert main(_argv(inputs)) == 2
    assert "cannot read catalogue" in capsys.readouterr().err
    write_quakeml(inputs["catalog"])
    inputs["stations"] = inputs["stations"].with_name("nope.csv")
    assert main(_argv(inputs)) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not inputs["out"].exists()  # nothing written on unusable arguments


def test_bad_time_window(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_argv(inputs), "--start", "2024-03-02T00:00:00Z", "--end", "2024-03-01T00:00:00Z"]) == 2
    assert "--start must be before --end" in capsys.readouterr().err
    assert main([*_argv(inputs), "--start", "soon"]) == 2
    assert "--start: not an ISO-8601 UTC time" in capsys.readouterr().err


def test_a_service_that_dies_fails_the_run(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The detector exits at start (no model in --model-dir): exit 1, the report's first line names
    it, and the report makes no claim about re-association."""
    import numpy as np
    from obspy import Stream, Trace, UTCDateTime

    rng = np.random.default_rng(0)
    for comp in "ZNE":
        tr = Trace(rng.normal(0, 100, 3000).astype(np.int32))
        tr.stats.network, tr.stats.station, tr.stats.channel = "XX", "S01", f"HH{comp}"
        tr.stats.sampling_rate, tr.stats.starttime = 100.0, UTCDateTime("2024-03-01T12:00:00Z")
        Stream([tr]).write(str(inputs["archive"] / f"S01.HH{comp}.mseed"), format="MSEED")
    no_model = inputs["archive"].parent / "no-model"
    no_model.mkdir()
    assert main([*_argv(inputs), "--detector-args", f"--model-dir {no_model}", "--drain-timeout-s", "60"]) == 1
    err = capsys.readouterr().err
    assert "RUN FAILED" in err and "detector" in err
    first = (inputs["out"] / "report.md").read_text().splitlines()[2]
    assert first.startswith("- RUN FAILED: the pipeline failed: detector exited early"), first
    s = json.loads((inputs["out"] / "summary.json").read_text())
    assert s["run"]["reassociation_identical"] is False and s["run"]["reassociation_not_checked"]


def test_no_scorable_packet_fails_the_run_and_says_why(inputs: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Only a 10 Hz stream (below the scorable rates): exit 1, and the report's first lines name the
    stream, the reason and what would fix it."""
    import numpy as np
    from obspy import Stream, Trace, UTCDateTime

    rng = np.random.default_rng(0)
    for comp in "ZNE":
        tr = Trace(rng.normal(0, 100, 600).astype(np.int32))
        tr.stats.network, tr.stats.station, tr.stats.channel = "XX", "S01", f"HH{comp}"
        tr.stats.sampling_rate, tr.stats.starttime = 10.0, UTCDateTime("2024-03-01T12:00:00Z")
        Stream([tr]).write(str(inputs["archive"] / f"S01.HH{comp}.mseed"), format="MSEED")
    assert main([*_argv(inputs), "--drain-timeout-s", "60"]) == 1
    err = capsys.readouterr().err
    assert "RUN FAILED" in err and "no packet could be scored" in err and "rate_below_minimum" in err
    lines = (inputs["out"] / "report.md").read_text().splitlines()
    assert lines[2].startswith("- RUN FAILED: no packet could be scored"), lines[2]
    assert any(x.startswith("- Streams not scorable, rate_below_minimum (1): XX.S01..HH?") for x in lines[3:6])
