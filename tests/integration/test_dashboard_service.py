"""``eew dashboard`` as a process on the real embedded broker: health, token, data, live stream, bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.kafka import make_producer
from services.common.timeutil import now_ns
from services.dashboard import synthetic as syn
from services.pipeline.processes import ServiceProcess

pytestmark = pytest.mark.integration

SECRET = "integration-dashboard-0123456789"
STATIONS = Path(__file__).resolve().parents[2] / "services" / "demo" / "data" / "synthetic" / "stations.csv"


@pytest.fixture(scope="module")
def dash(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    run = tmp_path_factory.mktemp("dashboard-int")
    port = free_port()
    argv = ["dashboard", "--bootstrap-servers", broker.bootstrap, "--web-port", str(port),
            "--stations", str(STATIONS), "--tick-s", "0.2", "--health-interval-s", "1"]
    proc = ServiceProcess("dashboard", argv, run / "dashboard.log", free_port())
    proc.start(env={"EEW_API_TOKENS": f"viewer:{SECRET}:read"})
    try:
        proc.wait_ready(60)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proc.http_port}"
    finally:
        assert proc.stop() == 0, proc.log_tail()


def _poll(fn, timeout_s: float = 15.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.2)


def test_health_endpoints_and_metrics(dash: tuple[str, str]) -> None:
    _, health = dash
    assert httpx.get(f"{health}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{health}/readyz", timeout=5).json()
    assert ready["ready"] and set(ready["checks"]) >= {"web", "topics_assigned", "broker"}
    assert "eew_dashboard_stations" in httpx.get(f"{health}/metrics", timeout=5).text


def test_data_needs_a_token_and_the_page_loads_nothing_from_elsewhere(dash: tuple[str, str]) -> None:
    web, _ = dash
    page = httpx.get(f"{web}/", timeout=5)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.split("<body>")[0].replace('href="data:', "")  # no external asset in <head>
    for path in ("/api/snapshot", "/api/stream", "/api/site?lat=1&lon=1"):
        r = httpx.get(web + path, timeout=5)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{web}/api/snapshot", headers={"Authorization": "Bearer wrong-token-wrong-token"},
                     timeout=5).status_code == 401
    assert httpx.post(f"{web}/api/session", timeout=5).status_code == 401
    with httpx.Client(base_url=web, timeout=5) as c:
        r = c.post("/api/session", headers={"Authorization": f"Bearer {SECRET}"})
        assert r.status_code == 204 and "httponly" in r.headers["set-cookie"].lower()
        snap = c.get("/api/snapshot").json()  # the cookie is enough now
        assert [s[0] for s in snap["layout"]][:6] == [f"XX.S0{i}" for i in range(1, 7)]
        assert c.get("/api/site?lat=abc&lon=1").status_code == 400
        c.delete("/api/session")
        assert c.get("/api/snapshot").status_code == 401


def test_stream_sends_new_stations_and_alerts(dash: tuple[str, str], broker: EmbeddedBroker) -> None:
    web, _ = dash
    producer = make_producer(broker.bootstrap, "test-dashboard-int")
    event_id = f"int-{now_ns()}"
    got: dict[str, bool] = {"station": False, "event": False}
    try:
        with httpx.stream("GET", f"{web}/api/stream", headers={"Authorization": f"Bearer {SECRET}"},
                          timeout=httpx.Timeout(5.0, read=5.0)) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            producer.send("eew.scores.v1", key=b"ZZ.NEW1..HH?",
                          value=syn.score("ZZ", "NEW1", now_ns(), 0.8).SerializeToString()).get(10)
            quake = [syn.QuakeStation("ZZ", f"Q{i}", 37.5 + i / 10, -122.0, 2.0 + i) for i in range(4)]
            for a in syn.alert_versions(event_id, now_ns(), 37.6, -122.0, 8.0, 4.2, quake):
                producer.send("eew.alerts.v1", key=event_id.encode(), value=a.SerializeToString()).get(10)
            deadline = time.monotonic() + 15
            for line in r.iter_lines():
                if line.startswith("data: "):
                    msg = json.loads(line[6:])
                    if any(s[0] == "ZZ.NEW1" for s in msg.get("layout", [])):
                        got["station"] = True
                    for ev in msg.get("events", []):
                        if ev["event_id"] == event_id and [v["version"] for v in ev["versions"]] == [1, 2, 3]:
                            got["event"] = True
                if all(got.values()) or time.monotonic() > deadline:
                    break
    finally:
        producer.close(5)
    assert got == {"station": True, "event": True}


def test_undecodable_records_are_counted(dash: tuple[str, str], broker: EmbeddedBroker) -> None:
    _, health = dash
    producer = make_producer(broker.bootstrap, "test-dashboard-bad")
    try:
        producer.send("eew.scores.v1", key=b"XX.BAD..HH?", value=b"\xff\x00 not a protobuf").get(10)
        producer.send("eew.alerts.v1", key=b"x", value=b"").get(10)
    finally:
        producer.close(5)

    def counted() -> bool:
        text = httpx.get(f"{health}/metrics", timeout=5).text
        return ('eew_dashboard_decode_errors_total{reason="malformed_protobuf",topic="eew.scores.v1"}' in text
                and 'eew_dashboard_decode_errors_total{reason="empty",topic="eew.alerts.v1"}' in text)

    _poll(counted)


def test_a_run_that_starts_its_own_broker_gets_the_dashboard_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eew validate`` builds its run on LocalPipeline but starts the broker itself: with
    ``--dashboard-port`` (here 0) the dashboard joins at the run's first liveness check."""
    from services.pipeline.local import LocalPipeline

    pipe = LocalPipeline(tmp_path / "run", STATIONS, dashboard_port=0, dashboard_token=f"viewer:{SECRET}:read")
    pipe.broker.start()
    try:
        pipe.check_alive()  # as validate's tick does
        assert pipe.dashboard is not None and pipe.dashboard in pipe.services
        pipe.dashboard.wait_ready(60)
        assert f"dashboard (replay): {pipe.dashboard_url}" in capsys.readouterr().out
        r = httpx.get(f"{pipe.dashboard_url}api/snapshot", headers={"Authorization": f"Bearer {SECRET}"}, timeout=5)
        assert r.status_code == 200 and r.json()["config"]["replay"] is True
    finally:
        assert pipe.stop()["dashboard"] == 0


def test_subscribers_sites_from_the_subscriber_api(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A subscriber created through `eew alert`'s API becomes a countdown choice on the page."""
    admin = "dashboard-admin-token-0123456789"
    api_port, web_port = free_port(), free_port()
    alerting = ServiceProcess(
        "alerting", ["alert", "--bootstrap-servers", broker.bootstrap, "--stations", str(STATIONS),
                     "--api-port", str(api_port), "--outbox-db", f"sqlite:///{tmp_path / 'outbox.sqlite'}"],
        tmp_path / "alerting.log", free_port()).start(env={"EEW_API_TOKENS": f"ops:{admin}:admin"})
    dash = ServiceProcess(
        "dashboard", ["dashboard", "--bootstrap-servers", broker.bootstrap, "--web-port", str(web_port),
                      "--health-interval-s", "1", "--subscribers-url", f"http://127.0.0.1:{api_port}/v1/subscribers"],
        tmp_path / "dashboard.log", free_port())
    try:
        def created() -> bool:
            try:
                r = httpx.post(f"http://127.0.0.1:{api_port}/v1/subscribers", headers={"Authorization": f"Bearer {admin}"},
                               json={"name": "Hospital", "latitude": 37.5, "longitude": -122.0, "channels": {"sse": True}},
                               timeout=5)
            except httpx.HTTPError:
                return False
            assert r.status_code in (201, 503), r.text
            return r.status_code == 201

        _poll(created, 60)
        dash.start(env={"EEW_API_TOKENS": f"viewer:{SECRET}:read", "EEW_SUBSCRIBERS_TOKEN": admin})
        dash.wait_ready(60)

        def listed() -> bool:
            snap = httpx.get(f"http://127.0.0.1:{web_port}/api/snapshot",
                             headers={"Authorization": f"Bearer {SECRET}"}, timeout=5).json()
            return {"name": "subscriber Hospital", "latitude": 37.5, "longitude": -122.0} in snap["config"]["sites"]

        _poll(listed, 30)
    finally:
        assert dash.stop() in (0, None), dash.log_tail()
        alerting.stop()
