"""``eew dashboard`` in a real browser: Debian's chromium driven by Playwright.

The dashboard runs as its own process on the embedded broker; the test publishes what the pipeline
would (station scores every second, then the NEW/UPDATE/UPDATE alert versions of the demo's shipped
synthetic earthquake, shifted to now) and reads what the page shows: its JavaScript state, the DOM,
and the pixels of the map's canvases. Screenshots go to the test's temporary folder (the README's
comes from test_dashboard_replay.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.kafka import make_producer
from services.common.timeutil import now_ns
from services.dashboard import synthetic as syn
from services.pipeline.processes import ServiceProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "services" / "demo" / "data" / "synthetic"
DOCS_SHOT = REPO / "services" / "dashboard" / "docs" / "dashboard.png"  # the README's screenshot
CHROMIUM = os.environ.get("EEW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SECRET = "dashboard-test-token-0123456789"
TOKEN = f"ops:{SECRET}:read"
WAIT_S = 10.0  # "within a few seconds of the alert": a deadline, generous for a busy machine


def _chromium() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    return sync_playwright


def _stations() -> list[syn.QuakeStation]:
    event = json.loads((SHIPPED / "event.json").read_text())
    origin = event["origin_time"]
    t0 = time.mktime(time.strptime(origin[:19], "%Y-%m-%dT%H:%M:%S"))
    out = []
    for s in event["stations"]:
        tp = time.mktime(time.strptime(s["p_time"][:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + s["p_time"][20:26])
        out.append(syn.QuakeStation(s["network"], s["station"], s["latitude"], s["longitude"], tp - t0))
    return out


class Scores:
    """Publishes a score per second for every station not silenced (a live network)."""

    def __init__(self, bootstrap: str, stations: list[syn.QuakeStation]) -> None:
        self.producer = make_producer(bootstrap, "test-dashboard")
        self.stations = stations
        self.silent: set[str] = set()
        self.triggered: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t = now_ns()
            for s in self.stations:
                if s.station in self.silent:
                    continue
                prob = 0.97 if s.station in self.triggered else 0.03
                msg = syn.score(s.network, s.station, t, prob)
                self.producer.send("eew.scores.v1", key=f"{s.network}.{s.station}..HH?".encode(),
                                   value=msg.SerializeToString())
            self.producer.flush(10)
            self.stop.wait(0.5)

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.producer.send(topic, key=key, value=value, headers=headers or []).get(timeout=10)


@pytest.fixture(scope="module")
def dashboard(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Scores]]:
    run = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    argv = ["dashboard", "--bootstrap-servers", broker.bootstrap, "--web-port", str(port),
            "--stations", str(SHIPPED / "stations.csv"), "--sites", "San Jose:37.338:-121.886,Oakland:37.804:-122.271",
            "--gap-after-s", "3", "--tick-s", "0.25", "--history-s", "0"]
    proc = ServiceProcess("dashboard", argv, run / "dashboard.log", free_port()).start(env={"EEW_API_TOKENS": TOKEN})
    scores = Scores(broker.bootstrap, _stations())
    try:
        proc.wait_ready(60)
        scores.thread.start()
        yield f"http://127.0.0.1:{port}/", scores
    finally:
        scores.stop.set()
        scores.thread.join(10)
        scores.producer.close(5)
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _wait(page: Any, expr: str, timeout: float = 15_000) -> None:
    """Poll a JavaScript expression until truthy (page.evaluate runs under the page's strict CSP,
    which refuses the eval that Playwright's wait_for_function uses)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        if page.evaluate(expr):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout / 1000:.0f} s: {expr}")
        time.sleep(0.1)


def _open(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 860})
    page = ctx.new_page()
    problems: list[str] = []
    origin = url.rstrip("/")
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request off the dashboard: {r.url}")
            if not r.url.startswith((origin, "data:")) else None)
    return ctx, page, problems


def _signed_in(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    ctx, page, problems = _open(browser, url)
    page.goto(f"{url}#token={SECRET}")
    _wait(page, "window.eewDashboard && window.eewDashboard.ready", timeout=30_000)
    return ctx, page, problems


def test_token_required(browser: Any, dashboard: tuple[str, Scores], shots: Path) -> None:
    url, _ = dashboard
    ctx, page, _ = _open(browser, url)
    try:
        assert page.request.get(f"{url}api/snapshot").status == 401
        assert page.request.get(f"{url}api/stream").status == 401
        page.goto(url)
        page.wait_for_selector("#login:not(.hidden)", timeout=15_000)
        assert page.locator("#main").is_hidden()
        page.fill("#token", "not-the-token-at-all")
        page.click("#login button[type=submit]")
        _wait(page, "document.getElementById('login-error').textContent.includes('refused')")
        page.screenshot(path=str(shots / "login.png"))
        page.fill("#token", SECRET)
        page.click("#login button[type=submit]")
        _wait(page, "window.eewDashboard && window.eewDashboard.ready", timeout=30_000)
        assert page.locator("#main").is_visible()
    finally:
        ctx.close()


def test_page_loads_without_console_errors(browser: Any, dashboard: tuple[str, Scores], shots: Path) -> None:
    url, _ = dashboard
    ctx, page, problems = _signed_in(browser, url)
    try:
        # the stations of the inventory are drawn, and the live ones turn live within a few ticks
        _wait(page, "['S01','S02','S03','S04','S05','S06'].every(s => 'XX.' + s in window.eewDashboard.drawn.stations)",
              timeout=15_000)
        _wait(page, "window.eewDashboard.stationState('XX.S01') === 'live'", timeout=15_000)
        # the basemap was drawn (coastlines of the San Francisco Bay area): the base layer is not empty
        drawn = page.evaluate("""() => { const c = document.getElementById('layer-base');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")
        assert drawn > 1000, "the basemap layer is empty"
        page.screenshot(path=str(shots / "loaded.png"))
        assert problems == []
    finally:
        ctx.close()


def test_replayed_quake_appears_with_stations_and_versions(
    browser: Any, dashboard: tuple[str, Scores], shots: Path
) -> None:
    url, scores = dashboard
    ctx, page, problems = _signed_in(browser, url)
    try:
        _wait(page, "window.eewDashboard.stationState('XX.S01') === 'live'", timeout=15_000)
        stations = scores.stations
        event_id = f"eew-test-{now_ns()}"
        origin = now_ns() - 7 * 1_000_000_000  # the alert comes a few seconds after the origin, as live
        scores.triggered = {s.station for s in stations}
        versions = syn.alert_versions(event_id, origin, 37.8, -122.2, 10.0, 5.1, stations)
        sent_at = {}
        for a in versions:
            sent_at[a.version] = page.evaluate("performance.now()")
            scores.send("eew.alerts.v1", event_id.encode(), a.SerializeToString())
        _wait(
            page,
            f"(() => {{ const s = window.eewDashboard.seen; return [1,2,3].every(v => '{event_id}:' + v in s) "
            f"&& '{event_id}:3:listed' in s; }})()", timeout=WAIT_S * 1000,
        )
        seen = page.evaluate("window.eewDashboard.seen")
        lag = {v: round((seen[f"{event_id}:{v}:listed"] - t) / 1000, 2) for v, t in sent_at.items()}
        print(f"alert published -> listed on the page: {lag} s")
        ev = next(e for e in page.evaluate("window.eewDashboard.events()") if e["id"] == event_id)
        assert ev["versions"] == [1, 2, 3]
        assert sorted(ev["stations"]) == sorted(f"XX.{s.station}" for s in stations)
        # the epicentre is drawn on the map where the alert puts it, in the epicentre's colour
        x, y = page.evaluate(f"window.eewDashboard.drawn.events['{event_id}']")
        assert page.evaluate(f"window.eewDashboard.topPixel({x}, {y})") == "#ff2d2d"
        # the timeline has a chip per version; the list names each version's type
        card = page.locator(f"[data-event-id='{event_id}']")
        assert card.locator(".chip").count() == 3
        assert "NEW" in card.locator("li[data-version='1']").inner_text()
        assert "Mpd 5.1" in card.inner_text()
        # the triggered stations are ringed, and the countdown at the configured site runs
        _wait(page, "window.eewDashboard.stationPixel('XX.S01') === window.eewDashboard.colors.live")
        _wait(page, f"document.querySelector('[data-site-event=\"{event_id}\"]') !== null",
                               timeout=WAIT_S * 1000)
        page.screenshot(path=str(shots / "event.png"))
        assert problems == []
    finally:
        scores.triggered = set()
        ctx.close()


def test_silent_station_changes_colour(browser: Any, dashboard: tuple[str, Scores], shots: Path) -> None:
    url, scores = dashboard
    ctx, page, problems = _signed_in(browser, url)
    try:
        _wait(
            page,
            "window.eewDashboard.stationPixel('XX.S04') === window.eewDashboard.colors.live", timeout=15_000
        )
        scores.silent.add("S04")
        _wait(page, "window.eewDashboard.stationState('XX.S04') === 'gap'", timeout=30_000)
        _wait(
            page,
            "window.eewDashboard.stationPixel('XX.S04') === window.eewDashboard.colors.gap", timeout=WAIT_S * 1000
        )
        # a dead-lettered record marks its station as 'data rejected'
        scores.send("eew.deadletter.v1", b"XX.S05..HH?", b"", [("reason", b"bad_sampling_rate")])
        _wait(
            page,
            "window.eewDashboard.stationPixel('XX.S05') === window.eewDashboard.colors.rejected", timeout=WAIT_S * 1000
        )
        page.screenshot(path=str(shots / "silent.png"))
        scores.silent.discard("S04")
        _wait(
            page,
            "window.eewDashboard.stationPixel('XX.S04') === window.eewDashboard.colors.live", timeout=30_000
        )
        assert problems == []
    finally:
        scores.silent.clear()
        ctx.close()
