"""``eew demo``: start the broker and all services, replay an archived earthquake, print the alert.

By default it replays a real earthquake shipped with it (``services/demo/data/openeew_mx``: the
OpenEEW MEMS accelerometer network in Mexico, 2020-01-29 M5.1, 9 devices at their native 31.25 Hz,
acceleration; see its README.md and LICENSE) and prints each alert beside the catalogue's epicentre
and magnitude. ``--source real`` builds an archive from ``../shared`` recordings placed at six
demo stations with travel-time-consistent P arrivals, ``synthetic`` replays the small synthetic
archive in ``services/demo/data/synthetic``, ``noise`` real noise only. The webhook receiver is
local; the demo exits 0 when at least one alert was delivered to it.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from services.common.domain import haversine_km
from services.common.lifecycle import setup_logging
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.settings import ServiceSettings, load_settings
from services.common.timeutil import ns_to_iso
from services.pipeline import archives as archive
from services.pipeline.collect import read_alerts
from services.pipeline.local import LocalPipeline, wait_quiet
from services.pipeline.receiver import WebhookReceiver

log = logging.getLogger("eew.demo")


class DemoSettings(ServiceSettings):
    """Settings of ``eew demo``."""

    source: Literal["auto", "openeew", "real", "synthetic", "noise"] = Field(
        "auto", description="Archive: the shipped real earthquake (openeew: OpenEEW Mexico, 31.25 Hz "
        "accelerometers), real recordings from the shared folder placed at demo stations, the shipped "
        "synthetic one, real noise only; auto: openeew."
    )
    shared_dir: Path = Field(Path("../shared"), description="The shared data folder (real recordings).")
    run_dir: Path | None = Field(None, description="Where logs and the built archive go (default: a temp dir).")
    timeout_s: float = Field(100.0, description="Give up waiting for alerts after this many seconds.")
    speed: float = Field(
        5.0, description="Replay speed: 1 = real time, N = N x real time, 0 = as fast as possible. At 0 the "
        "whole archive lands at once and the latency printed measures draining a backlog, not live operation."
    )
    quiet_s: float = Field(6.0, description="Stop once no new alert has arrived for this long.")
    replay_timeout_s: float = Field(
        120.0, gt=0, description="Give up the archive's replay (`eew replay` into the demo's broker) after this long."
    )
    read_timeout_s: float = Field(
        5.0, gt=0, description="At the end, read the alerts topic back for at most this long (for the report)."
    )
    log_level: str = Field("WARNING", description="Logging level of the demo process itself.")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(DemoSettings, argv)
    setup_logging(settings.log_level)
    t0 = time.monotonic()
    run_dir = settings.run_dir or Path(tempfile.mkdtemp(prefix="eew-demo-"))
    source = settings.source
    has_shared = (settings.shared_dir / "data" / "nc_phasenet").is_dir()
    if source == "auto":
        source = "openeew"
    if source in ("real", "noise") and not has_shared:
        print(f"eew demo: {settings.shared_dir} has no data/nc_phasenet; use --source synthetic", file=sys.stderr)
        return 2
    if source in ("openeew", "synthetic"):
        arch = archive.SHIPPED_OPENEEW if source == "openeew" else archive.SHIPPED_SYNTHETIC
        event = json.loads((arch / "event.json").read_text())
    else:
        arch = run_dir / "archive"
        event = archive.build(arch, source, settings.shared_dir)
    print(f"[demo] archive: {source} ({len(event['stations'])} stations) at {arch}")
    print(f"[demo] logs: {run_dir}")

    with WebhookReceiver() as receiver:
        token = secrets.token_urlsafe(18)
        pipeline = LocalPipeline(run_dir, arch / "stations.csv", webhook_urls=[receiver.url], dashboard_port=0,
                                 dashboard_token=f"demo:{token}:read")
        try:
            pipeline.start()
            print(f"[demo] dashboard (replay): {pipeline.dashboard_url}#token={token}" if pipeline.dashboard_url
                  else "[demo] dashboard not started: front end not built (make web)")
            print(f"[demo] broker {pipeline.bootstrap}; detector and alerting started; "
                  f"replaying at {settings.speed:g}x real time" if settings.speed else "replaying at full speed")
            pipeline.replay(arch, speed=settings.speed, timeout_s=settings.replay_timeout_s)
            expected = 0 if source == "noise" else 1
            wait_quiet(lambda: len(receiver.snapshot()), expected, settings.quiet_s, settings.timeout_s,
                       pipeline.check_alive)
            alerts = read_alerts(pipeline.bootstrap, settings.read_timeout_s)
        except Exception as exc:
            print(f"[demo] FAILED: {exc}", file=sys.stderr)
            for s in pipeline.services:
                print(f"--- {s.name} log tail ---\n{s.log_tail()}", file=sys.stderr)
            pipeline.stop()
            return 1
        pipeline.stop()
    got = receiver.snapshot()
    _print_report(event, got, alerts)
    last = max(got, key=lambda r: r.body.get("version", 0)).body if got else None
    if last is not None and event.get("magnitude") is not None:
        print(f"[demo] catalogue: {event.get('catalog_name', '')} {event['origin_time']} {event['latitude']:.3f}, "
              f"{event['longitude']:.3f} M {event['magnitude']:.1f}; last alert (v{last.get('version')}): "
              f"{_compare(event, last.get('location'), last.get('magnitude')) or 'not located'}")
    wall = time.monotonic() - t0
    print(f"[demo] wall time {wall:.1f} s")
    if source == "noise":
        return 0 if not got else 1
    return 0 if got else 1


def _compare(event: dict, loc: dict | None, mag: dict | None) -> str:
    """The alert's epicentre and magnitude against the event's (catalogue or built-in): differences."""
    parts = []
    if loc:
        km = haversine_km(loc["latitude"], loc["longitude"], event["latitude"], event["longitude"])
        parts.append(f"epicentre {km:.1f} km from the {'catalogue' if 'magnitude' in event else 'built-in'} one")
    if mag and event.get("magnitude") is not None:
        diff = round(mag["value"] - event["magnitude"], 1) + 0.0  # + 0.0: no "-0.0"
        parts.append(f"magnitude {diff:+.1f} vs the catalogue's M {event['magnitude']:.1f}")
    return "; ".join(parts)


def _print_report(event: dict, got: list, alerts: list[pb.Alert]) -> None:  # noqa: ANN001
    truth = {s["station"]: s["p_time"] for s in event["stations"]}
    real = "magnitude" in event  # a catalogue earthquake: P times predicted, not built in
    depth = f"{event['depth_km']:.0f} km" if event.get("depth_km") is not None else "depth not given"
    ref = (f"catalogue {event['latitude']:.3f}, {event['longitude']:.3f}, {depth}, M {event['magnitude']:.1f}"
           if real else f"built-in {event['latitude']:.3f}, {event['longitude']:.3f}, {depth}")
    print(f"[demo] webhook receiver got {len(got)} alert message(s)")
    by_key = {(a.event_id, a.version): a for a in alerts}
    for r in got:
        b = r.body
        print(
            f"  ALERT {str(b.get('type', '?')).upper():6s} event={b.get('event_id')} v{b.get('version')} "
            f"probability={b.get('probability'):.2f} origin={b.get('origin_time')}"
        )
        loc, mag = b.get("location"), b.get("magnitude")
        if loc:
            print(f"      location {loc['latitude']:.3f}, {loc['longitude']:.3f}, {loc['depth_km']:.0f} km "
                  f"(+/- {loc.get('uncertainty_km', float('nan')):.1f} km"
                  f"{', flagged uncertain: beyond --locate-max-uncertainty-km' if loc.get('uncertain') else ''}; {ref}, "
                  f"origin {event.get('origin_time')})")
        if mag:
            print(f"      magnitude {mag.get('type', '')} {mag['value']:.1f} +/- {mag.get('uncertainty', 0):.1f}")
        if loc or mag:
            print(f"      vs the event: {_compare(event, loc, mag)}")
        for s in b.get("stations", []):
            sta = s.get("station")
            print(f"      {s.get('network')}.{sta:<5} P={s.get('p_time')}   "
                  f"({'predicted P (iasp91)' if real else 'built-in P'} {truth.get(sta, '?')})")
        a = by_key.get((b.get("event_id"), b.get("version")))
        if a is not None and a.latest_ingest_time_ns:
            proc_ms = (a.created_time_ns - a.latest_ingest_time_ns) / 1e6
            e2e_ms = (r.received_ns - a.latest_ingest_time_ns) / 1e6
            print(f"      latency: packet arrival -> alert published {proc_ms:.0f} ms; "
                  f"-> webhook received {e2e_ms:.0f} ms (created {ns_to_iso(a.created_time_ns)})")


if __name__ == "__main__":
    sys.exit(main())
