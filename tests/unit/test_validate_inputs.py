"""Inputs of ``eew validate``: catalogue CSV/QuakeML parsing and the archive index from miniSEED headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime

from services.validate.core import NS
from services.validate.exceptions import CatalogError
from services.validate.inputs import load_catalog, scan_archive
from services.validate.testarchive import EVENTS, ORIGIN, write_quakeml


def test_csv_catalogue(tmp_path: Path) -> None:
    """Columns by name, depth in km, empty magnitude allowed, ids generated in file order, sorted by time."""
    p = tmp_path / "cat.csv"
    p.write_text(
        "# comment\n"
        "time,latitude,longitude,depth,magnitude\n"
        "2024-03-01T12:05:00Z,37.9,-122.1,8.5,\n"
        "2024-03-01T12:00:00.250Z,37.8,-122.2,10,3.9\n"
    )
    events, notes = load_catalog(p)
    assert notes == []
    assert [e.event_id for e in events] == ["ev0002", "ev0001"]
    first = events[0]
    assert first.origin_ns == UTCDateTime("2024-03-01T12:00:00.250Z").ns
    assert (first.latitude, first.longitude, first.depth_km, first.magnitude) == (37.8, -122.2, 10.0, 3.9)
    assert events[1].magnitude is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when,latitude,longitude,magnitude\n2024-03-01T12:00:00Z,1,2,3\n", "missing columns ['time']"),
        ("time,latitude,longitude,depth\nyesterday,1,2,3\n", "cat.csv:2: time 'yesterday'"),
        ("time,latitude,longitude,depth\n2024-03-01T12:00:00Z,95,2,3\n", "out of range"),
        ("time,latitude,longitude,depth\n2024-03-01T12:00:00Z,1,x,3\n", "longitude='x' is not a number"),
        ("event_id,time,latitude,longitude,depth\na,2024-03-01T12:00:00Z,1,2,3\na,2024-03-01T12:00:01Z,1,2,3\n",
         "duplicate event ids"),
    ],
)
def test_bad_csv_catalogue_is_explained(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "cat.csv"
    p.write_text(text)
    with pytest.raises(CatalogError) as err:
        load_catalog(p)
    assert message in str(err.value)


def test_csv_catalogue_without_depth_gets_the_default_depth(tmp_path: Path) -> None:
    """The openeew_mx layout (name,time_utc,...; no depth): default depth, named in a warning."""
    p = tmp_path / "cat.csv"
    p.write_text("name,time_utc,latitude,longitude,magnitude\n3736,2017-12-16 04:07:30,17.592,-101.41,4.1\n")
    events, notes = load_catalog(p, default_depth_km=20.0)
    assert [e.event_id for e in events] == ["3736"] and events[0].depth_km == 20.0
    assert events[0].depth_given is False and events[0].origin_ns == UTCDateTime("2017-12-16T04:07:30Z").ns
    assert len(notes) == 1 and "20 km" in notes[0] and "3736" in notes[0]


def test_missing_catalogue(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope.xml")


def test_quakeml_catalogue(tmp_path: Path) -> None:
    """QuakeML through ObsPy: preferred origin and magnitude, depth from metres to km, P picks."""
    p = tmp_path / "cat.xml"
    write_quakeml(p, {"ev1": {"S01": ORIGIN + 3.5, "S02": ORIGIN + 5.25}})
    events, notes = load_catalog(p)
    assert notes == [] and len(events) == len(EVENTS)
    ev1 = next(e for e in events if e.event_id.endswith("/ev1"))
    assert ev1.origin_ns == ORIGIN.ns and ev1.depth_km == pytest.approx(10.0)
    assert ev1.magnitude == pytest.approx(3.9) and ev1.magnitude_type == "ML"
    net = ev1.p_picks[0][0].split(".")[0]
    assert ev1.p_picks == ((f"{net}.S01", (ORIGIN + 3.5).ns), (f"{net}.S02", (ORIGIN + 5.25).ns))
    assert all(e.p_picks == () for e in events if not e.event_id.endswith("/ev1"))


def test_unreadable_quakeml(tmp_path: Path) -> None:
    p = tmp_path / "cat.xml"
    p.write_text("<not quakeml")
    with pytest.raises(CatalogError, match="cannot read catalogue"):
        load_catalog(p)


def _write(path: Path, channel: str, start: UTCDateTime, n: int, sta: str = "S01") -> None:
    tr = Trace(np.arange(n, dtype=np.int32))
    tr.stats.network, tr.stats.station, tr.stats.channel = "XX", sta, channel
    tr.stats.sampling_rate, tr.stats.starttime = 100.0, start
    Stream([tr]).write(str(path), format="MSEED", reclen=512)


def test_archive_index_coverage_and_skipped(tmp_path: Path) -> None:
    """Headers only: merged intervals per sensor, non-miniSEED files and rejected channels listed."""
    t0 = UTCDateTime("2024-03-01T12:00:00Z")
    _write(tmp_path / "a_z.mseed", "HHZ", t0, 1000)
    _write(tmp_path / "a_n.mseed", "HHN", t0, 1000)
    _write(tmp_path / "b_z.mseed", "HHZ", t0 + 60, 500)
    _write(tmp_path / "log.mseed", "LOG", t0, 10)  # not a seismic channel: the ingest rejects it
    (tmp_path / "README.txt").write_text("a side file: not even tried")
    (tmp_path / "broken.mseed").write_bytes(b"not miniSEED at all" * 50)
    idx = scan_archive([str(tmp_path)])
    assert not idx.empty and len(idx.files) == 4
    assert [Path(p).name for p, _ in idx.skipped] == ["broken.mseed"]
    cov = idx.coverage()
    assert [c.stream for c in cov] == ["XX.S01..HH?"]
    assert cov[0].intervals == ((t0.ns, t0.ns + 10 * NS), ((t0 + 60).ns, (t0 + 65).ns))
    msgs = " ".join(idx.messages())
    assert "broken.mseed" in msgs and "XX.S01..LOG" in msgs
    assert [p.name for p in idx.files_for("XX.S01..HH?", (t0 + 61).ns, (t0 + 62).ns)] == ["b_z.mseed"]
    assert len(idx.files_in(None, (t0 + 30).ns)) == 2  # the Z and N files of the first part


def test_empty_archive_is_explained(tmp_path: Path) -> None:
    idx = scan_archive([str(tmp_path)])
    assert idx.empty and idx.coverage() == []
    assert any("no files found" in m for m in idx.messages())
    (tmp_path / "x.mseed").write_text("x" * 600)
    idx = scan_archive([str(tmp_path)])
    assert idx.empty and any("not readable miniSEED" in m for m in idx.messages())
    assert not any("no usable waveform data" in m for m in idx.messages())  # no miniSEED file at all


def test_time_window_clips_the_index_and_selects_sds_day_files(tmp_path: Path) -> None:
    """An SDS tree with --start/--end: only the day files of the window, traces clipped to it."""
    root = tmp_path / "sds"
    for day in ("2024-03-01T23:59:00Z", "2024-03-02T00:00:00Z", "2024-03-05T00:00:00Z"):
        t = UTCDateTime(day)
        d = root / str(t.year) / "XX" / "S01" / "HHZ.D"
        d.mkdir(parents=True, exist_ok=True)
        _write(d / f"XX.S01..HHZ.D.{t.year}.{t.julday:03d}", "HHZ", t, 6000)
    start, end = UTCDateTime("2024-03-01T23:59:30Z").ns, UTCDateTime("2024-03-02T00:00:30Z").ns
    idx = scan_archive([str(root)], start, end)
    assert sorted(p.name for p in idx.files) == ["XX.S01..HHZ.D.2024.061", "XX.S01..HHZ.D.2024.062"]
    assert idx.coverage()[0].intervals == ((start, end),)
    assert len(scan_archive([str(root)]).files) == 3  # no window: every file
