"""``models.openeew.score_file`` replays a record as its devices send it: 32-sample packets, each
stamped as ingested when its last sample was recorded, so a score's ``ingest_time_ns`` is the moment
its window could be scored -- the alert times of ``bench/bench_openeew_alerts.py`` rest on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime

from models.contract import DEFAULT_MODEL_DIR
from models.openeew import DEVICE_PACKET_SAMPLES, core_factory_for, score_file
from services.common.streams import resample_ratio
from services.detector.resample import latency_s

FS = 31.25
NS = 1_000_000_000


def test_scores_are_released_when_the_packet_completing_their_window_arrives(tmp_path: Path) -> None:
    start = UTCDateTime(2020, 1, 1, 0, 0, 0.37)  # packets not aligned with the detector's 1 s grid
    rng = np.random.default_rng(1)
    st = Stream(
        [
            Trace(
                (rng.standard_normal(int(60 * FS)) * 5).astype(np.float32),
                header={
                    "network": "MX",
                    "station": "001",
                    "location": "00",
                    "channel": f"HN{c}",
                    "sampling_rate": FS,
                    "starttime": start,
                },
            )
            for c in "ZNE"
        ]
    )
    path = tmp_path / "quiet.mseed"
    st.write(str(path), format="MSEED")

    factory = core_factory_for(DEFAULT_MODEL_DIR)  # the shipped ONNX model, configured as `eew detect`
    scores, rejected, _ = score_file(path, factory, packet_samples=DEVICE_PACKET_SAMPLES)
    assert not rejected and len(scores) > 40
    t0 = int(round(start.timestamp * 1e6)) * 1000
    packet_ns = DEVICE_PACKET_SAMPLES / FS * NS
    up, down = resample_ratio(FS, 100.0)  # type: ignore[misc]
    lookahead_ns = latency_s(FS, up, down) * NS
    for s in scores:
        k = (s.ingest_time_ns - t0) / packet_ns
        last = s.ingest_time_ns == t0 + round(60 * NS)  # the record's last, partial packet
        assert abs(k - round(k)) < 1e-3 or last, "released at a packet's end"
        wait = s.ingest_time_ns - s.window_end_ns
        # the window's last model sample needs the resampler's look-ahead; the packet holding that
        # input sample is at most one packet later
        assert lookahead_ns - NS / FS <= wait <= lookahead_ns + packet_ns + NS / FS, (s.window_end_ns, wait)
