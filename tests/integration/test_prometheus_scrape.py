"""Real Prometheus (Debian's package) scraping real running services, queried over its HTTP API.

`eew detect` (with the trained ONNX model) and `eew alert` run as processes against the embedded
broker; each test feeds its service real messages on private topics, then asks Prometheus for
`up`, the service's counters at the exact values fed in, and (alerting) a recording rule from
deploy/prometheus/rules.yml evaluated by that Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.codec import Packet, encode_packet
from services.common.kafka import ensure_topics, make_producer
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import now_ns
from services.common.topics import TopicSpec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
STATIONS = REPO / "services" / "demo" / "data" / "synthetic" / "stations.csv"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: apt-get install -y --no-install-recommends prometheus")
    return path


def _get_json(url: str, timeout_s: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(cond, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):  # noqa: ANN001
    """Poll cond() until it returns a truthy value; fail with what (and the log tail) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what} (waited {timeout_s:.0f} s)\n{tail}")


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own config and TSDB in a temp folder."""

    def __init__(self, workdir: Path, targets: dict[str, str], rule_files: list[Path]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        check = subprocess.run(
            [_binary("promtool"), "check", "config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    _binary("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(lambda: _http_ok(f"{self.url}/-/ready"), 60, "prometheus not ready", self.proc, self.log)
        return self

    def query(self, expr: str) -> list[dict]:
        data = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert data["status"] == "success", data
        return data["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The single instant value of expr, or None when it has no series (yet)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _score(station: str, i: int) -> bytes:
    t_end = now_ns() - 5_000_000_000 + i * 1_000_000_000
    msg = pb.StationScore(
        schema_version=1,
        network="XX",
        station=station,
        location="",
        channel_prefix="HH",
        window_start_time_ns=t_end - 1_000_000_000,
        window_end_time_ns=t_end,
        probability=0.01,
        triggered=False,
        model_id="prometheus-test",
        model_version="0",
        ingest_time_ns=t_end + 50_000_000,
        scored_time_ns=t_end + 100_000_000,
        components=3,
    )
    return msg.SerializeToString()


@contextlib.contextmanager
def service_process(name: str, args: list[str], tmp_path: Path) -> Iterator[int]:
    """`eew <args>` as a real process with its metrics on a free port; yields the port, then
    SIGTERMs it and requires a clean exit."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    cmd = [sys.executable, "-m", "services.cli", *args, "--http-port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), 90, f"{name} /healthz", proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            rc = None
        assert rc == 0, f"eew {args[0]} exit code {rc}:\n{log.read_text(errors='replace')[-3000:]}"


def _private_topic(kind: str, partitions: int, bootstrap: str) -> str:
    """A topic only this test uses, so exact counts cannot be disturbed by other tests on the broker."""
    topic = TopicSpec(f"eew.{kind}.promtest.{os.getpid()}.{free_port()}", partitions, "this test only")
    ensure_topics(bootstrap, [topic])
    return topic.name


def _send_all(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(bootstrap, client_id="promtest")
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        producer.flush(30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(10)


@pytest.fixture
def alerting_service(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """`eew alert` on a private scores topic; yields (metrics port, topic)."""
    topic = _private_topic("scores", 2, broker.bootstrap)
    args = ["alert", "--bootstrap-servers", broker.bootstrap, "--scores-topic", topic,
            "--group-id", f"promtest-{topic}", "--stations", str(STATIONS)]  # fmt: skip
    with service_process("alerting", args, tmp_path) as port:
        yield port, topic


@pytest.fixture
def detector_service(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """`eew detect` (the real ONNX model) on private waveform/score topics; yields (metrics port, topic)."""
    waveforms = _private_topic("waveforms", 2, broker.bootstrap)
    scores = _private_topic("scores", 1, broker.bootstrap)
    args = ["detect", "--bootstrap-servers", broker.bootstrap, "--waveforms-topic", waveforms,
            "--scores-topic", scores, "--group-id", f"promtest-{waveforms}",
            "--providers", "CPUExecutionProvider"]  # fmt: skip
    with service_process("detector", args, tmp_path) as port:
        yield port, waveforms


def test_prometheus_scrapes_detector_service(
    broker: EmbeddedBroker, detector_service: tuple[int, str], tmp_path: Path
) -> None:
    """Prometheus sees the detector up, the exact number of packets fed in, and the provider in use."""
    port, topic = detector_service
    rng = np.random.default_rng(7)
    t0 = (now_ns() // 1_000_000_000 - 20) * 1_000_000_000
    messages = []
    for sta in ("P01", "P02"):
        for k in range(8):
            for cha in ("HHZ", "HHN", "HHE"):
                pkt = Packet("XX", sta, "", cha, t0 + k * 1_000_000_000, 100.0,
                             rng.normal(0, 200, 100).astype(np.int32), ingest_time_ns=now_ns())  # fmt: skip
                messages.append((pkt.key.encode(), encode_packet(pkt)))
    _send_all(broker.bootstrap, topic, messages)

    prom = Prometheus(tmp_path / "prometheus", {"eew-detector": f"127.0.0.1:{port}"}, [RULES]).start()
    try:
        _wait(
            lambda: prom.value('up{job="eew-detector"}') == 1.0,
            60,
            "up{job=eew-detector} != 1",
            prom.proc,
            prom.log,
        )
        _wait(
            lambda: prom.value('eew_detector_packets_in_total{job="eew-detector"}') == len(messages),
            90,
            f"eew_detector_packets_in_total never reached {len(messages)}: {prom.query('eew_detector_packets_in_total')}",
            prom.proc,
            prom.log,
        )
        providers = prom.query('eew_detector_execution_provider{job="eew-detector"} == 1')
        assert [p["metric"]["provider"] for p in providers] == ["CPUExecutionProvider"], providers
        _wait(lambda: (prom.value("sum(eew_detector_windows_scored_total)") or 0) > 0, 60, "no window scored",
              prom.proc, prom.log)  # fmt: skip
        assert prom.query("eew_detector_inference_seconds_count > 0"), "inference histogram scraped"
    finally:
        prom.stop()


def test_prometheus_scrapes_alerting_service(
    broker: EmbeddedBroker, alerting_service: tuple[int, str], tmp_path: Path
) -> None:
    """Prometheus sees the service up, its counters at the values fed in, and evaluates the shipped rules."""
    port, topic = alerting_service
    n_scores = 12
    messages = [(f"XX.S0{1 + i % 6}..HH?".encode(), _score(f"S0{1 + i % 6}", i)) for i in range(n_scores)]
    messages.append((b"XX.BAD..HH?", b"\xff\x00 not a protobuf"))
    _send_all(broker.bootstrap, topic, messages)

    prom = Prometheus(tmp_path / "prometheus", {"eew-alerting": f"127.0.0.1:{port}"}, [RULES]).start()
    try:
        _wait(
            lambda: prom.value('up{job="eew-alerting"}') == 1.0,
            60,
            "up{job=eew-alerting} != 1",
            prom.proc,
            prom.log,
        )
        total = n_scores + 1
        _wait(
            lambda: prom.value('eew_alerting_scores_in_total{job="eew-alerting"}') == total,
            90,
            f"eew_alerting_scores_in_total never reached {total}: "
            f"{prom.query('eew_alerting_scores_in_total')}",
            prom.proc,
            prom.log,
        )
        bad = prom.query('eew_alerting_decode_errors_total{job="eew-alerting"} > 0')
        assert len(bad) == 1 and float(bad[0]["value"][1]) == 1.0, bad
        assert prom.query("eew_alert_processing_latency_seconds_bucket"), "histogram exported"

        # The shipped rules are loaded and healthy, and a recording rule over this service evaluates.
        rules = _get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
        assert rules, "rules.yml loaded"
        unhealthy = [r["name"] for g in rules for r in g["rules"] if r.get("health") not in ("ok", "unknown")]
        assert not unhealthy, unhealthy
        _wait(
            lambda: prom.query("eew:alerting_scores_in:rate1m"),
            30,
            "recording rule has no value",
            prom.proc,
            prom.log,
        )
    finally:
        prom.stop()
