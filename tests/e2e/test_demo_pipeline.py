"""The whole pipeline on replayed archives: broker -> detector (real ONNX model) -> alerting -> webhook.

Each test runs the services as separate processes (``eew detect``, ``eew alert``, ``eew replay``)
against a real embedded broker, exactly as ``eew demo`` does.

Tolerances: picked P times within 0.5 s of the P built into the archive (the model's step is
0.1 s; real onsets are emergent at some stations), and the alert's first P within 0.5 s of the
earliest built-in P. The real earthquake ``eew demo`` replays by default (OpenEEW Mexico, shipped
in ``services/demo/data/openeew_mx``) has no built-in P: its alert must be located within 30 km of
the catalogue epicentre, checked as in ``test_openeew_pipeline``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from services.pipeline import archives as archive
from services.pipeline.local import LocalPipeline, wait_quiet
from services.pipeline.receiver import WebhookReceiver
from tests.e2e.test_openeew_pipeline import assert_located_near_catalogue, run_archive

pytestmark = pytest.mark.e2e
P_TOL_S = 0.5


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _run(arch: Path, tmp_path: Path, expect_alert: bool) -> list:
    with WebhookReceiver() as receiver:
        with LocalPipeline(tmp_path / "run", arch / "stations.csv", webhook_urls=[receiver.url]) as pipe:
            pipe.replay(arch, speed=0.0)
            wait_quiet(lambda: len(receiver.snapshot()), 1 if expect_alert else 0, quiet_s=8.0, timeout_s=90.0,
                       alive_fn=pipe.check_alive)
            pipe.check_alive()
        return receiver.snapshot()


def _assert_one_event(got: list, event: dict) -> None:
    assert got, "no alert reached the webhook receiver"
    ids = {r.body["event_id"] for r in got}
    assert len(ids) == 1, f"expected one event, got {ids}"
    types = [r.body["type"].lower() for r in got]
    assert types[0] == "new" and "cancel" not in types
    versions = [r.body["version"] for r in got]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)  # no duplicate deliveries
    truth = {s["station"]: _ts(s["p_time"]) for s in event["stations"]}
    last = max(got, key=lambda r: r.body["version"]).body
    stations = {s["station"]: _ts(s["p_time"]) for s in last["stations"]}
    assert len(stations) >= 3 and set(stations) <= set(truth)
    for sta, p in stations.items():
        assert abs(p - truth[sta]) <= P_TOL_S, f"{sta}: picked P {p - truth[sta]:+.2f} s off"
    first_p = min(_ts(s["p_time"]) for s in got[0].body["stations"])
    assert abs(first_p - min(truth.values())) <= P_TOL_S + 1.5  # first alert may start from the 2nd/3rd station


def test_real_recordings_give_one_alert_with_right_stations(shared: Path, tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    event = archive.build(arch, "real", shared)
    _assert_one_event(_run(arch, tmp_path, expect_alert=True), event)


def test_real_noise_archive_gives_no_alert(shared: Path, tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    archive.build(arch, "noise", shared)
    assert _run(arch, tmp_path, expect_alert=False) == []


def test_shipped_synthetic_archive_alerts_without_shared(tmp_path: Path) -> None:
    arch = archive.SHIPPED_SYNTHETIC
    event = json.loads((arch / "event.json").read_text())
    _assert_one_event(_run(arch, tmp_path, expect_alert=True), event)


def test_shipped_openeew_earthquake_is_located_near_the_catalogue_without_shared(tmp_path: Path) -> None:
    """What ``make demo`` replays on a fresh machine: a real M5.1 at 9 accelerometers, 31.25 Hz."""
    arch = archive.SHIPPED_OPENEEW
    event = json.loads((arch / "event.json").read_text())
    got, triggers = run_archive(arch, tmp_path / "run", speed=4.0)
    assert_located_near_catalogue(got, triggers, event)
