"""The retention janitor of ``eew broker --durable``: removes expired batch objects from SeaweedFS.

A thread that, every ``interval_s``, lists each partition's ``records/`` folder through the
SeaweedFS filer's HTTP API (sorted by name = base offset, paged, stopping at the first object
still within retention), deletes the expired prefix (``services.broker.retention.expired``),
prunes the filer's own metadata log (``expired_files``), then asks the master to vacuum volumes
so the freed space returns to the disk. Failures are
logged with topic/partition, counted, and retried at the next pass; they never stop the broker.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from services.broker.exceptions import RetentionError
from services.broker.metrics import BrokerMetrics
from services.broker.retention import BatchObject, expired, expired_files, is_batch

log = logging.getLogger(__name__)

#: where the filer logs its metadata changes (one folder a day, one file a minute)
META_LOG = "/topics/.system/log"
DIR_MODE = 1 << 31  # the filer's directory bit in an entry's Mode
_MTIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$")


def parse_mtime_ns(text: str) -> int:
    """SeaweedFS filer ``Mtime`` (RFC 3339, UTC, up to nanoseconds) to Unix ns."""
    m = _MTIME_RE.match(text)
    if m is None:
        raise RetentionError(f"unexpected filer Mtime {text!r}")
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    frac = (m.group(2) or "0")[:9].ljust(9, "0")
    return int(whole.timestamp()) * 1_000_000_000 + int(frac)


class FilerClient:
    """The few SeaweedFS filer and master HTTP calls the janitor needs (stdlib, bounded timeouts)."""

    def __init__(self, filer_url: str, master_url: str, timeout_s: float) -> None:
        self.filer_url = filer_url.rstrip("/")
        self.master_url = master_url.rstrip("/")
        self.timeout_s = timeout_s

    def list_pages(self, folder: str, page_size: int) -> Iterator[tuple[list[dict], bool]]:
        """Pages of a folder's entries in name order, each with whether more follow; none if absent."""
        last = ""
        while True:
            query = urllib.parse.urlencode({"limit": page_size, "lastFileName": last})
            url = f"{self.filer_url}{urllib.parse.quote(folder)}/?{query}"
            req = urllib.request.Request(url, headers={"Accept": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    body = json.load(resp)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return
                raise
            entries = body.get("Entries") or []
            more = bool(body.get("ShouldDisplayLoadMore")) and bool(entries)
            yield entries, more
            if not more:
                return
            last = body.get("LastFileName") or entries[-1]["FullPath"].rsplit("/", 1)[-1]

    def delete(self, path: str) -> None:
        req = urllib.request.Request(f"{self.filer_url}{urllib.parse.quote(path)}", method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # already gone: what we wanted
                raise

    def vacuum(self, garbage_threshold: float) -> None:
        """Compact volumes whose deleted share exceeds the threshold (returns the space to the disk)."""
        url = f"{self.master_url}/vol/vacuum?garbageThreshold={garbage_threshold}"
        with urllib.request.urlopen(url, timeout=self.timeout_s):
            pass


class RetentionJanitor:
    """Enforces per-topic retention on the durable broker's object store, in its own thread."""

    def __init__(
        self,
        filer: FilerClient,
        partitions: Mapping[str, int],
        retention_ms: Mapping[str, int],
        metrics: BrokerMetrics,
        interval_s: float,
        cluster: str = "tansu_cluster",
        bucket: str = "tansu",
        page_size: int = 1000,
        vacuum_threshold: float = 0.3,
        max_objects: int = 500,
        meta_log_keep_ms: int = 600_000,
    ) -> None:
        self.filer = filer
        self.partitions = dict(partitions)
        self.retention_ms = dict(retention_ms)
        self.metrics = metrics
        self.interval_s = interval_s
        self.root = f"/buckets/{bucket}/clusters/{cluster}/topics"
        self.page_size = page_size
        self.vacuum_threshold = vacuum_threshold
        self.max_objects = max_objects
        self.meta_log_keep_ms = meta_log_keep_ms
        #: partitions ("topic[p]") holding more than max_objects batch objects at the last pass
        self.crowded: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def folder(self, topic: str, partition: int) -> str:
        return f"{self.root}/{topic}/partitions/{partition:010d}/records"

    def sweep_partition(self, topic: str, partition: int, now_ns: int) -> tuple[int, int, int]:
        """Delete the expired prefix of one partition; (objects, bytes) removed and objects kept
        (counted up to just past ``max_objects``: Tansu's fetch time grows with that count)."""
        ms = self.retention_ms.get(topic, -1)
        n = size = kept = 0
        deleting = ms >= 0
        folder = self.folder(topic, partition)
        for entries, more in self.filer.list_pages(folder, self.page_size):
            page = [
                BatchObject(
                    e["FullPath"].rsplit("/", 1)[-1], parse_mtime_ns(e["Mtime"]), int(e.get("FileSize", 0))
                )
                for e in entries
                if is_batch(e["FullPath"].rsplit("/", 1)[-1])
            ]
            doomed, read_on = expired(page, now_ns, ms, more) if deleting else ([], False)
            for obj in doomed:
                if self._stop.is_set():
                    return n, size, kept
                self.filer.delete(f"{folder}/{obj.name}")
                n += 1
                size += obj.size
            kept += len(page) - len(doomed)
            deleting = deleting and read_on
            if not deleting and (kept > self.max_objects or not more):
                break
        return n, size, kept

    def prune_meta_log(self, now_ns: int) -> int:
        """Remove the filer's metadata-log files older than ``meta_log_keep_ms``; files removed."""
        files: list[tuple[str, int]] = []
        days: list[str] = []
        for entries, _more in self.filer.list_pages(META_LOG, self.page_size):
            days.extend(e["FullPath"] for e in entries if e.get("Mode", 0) & DIR_MODE)
        for day in days:
            for entries, _more in self.filer.list_pages(day, self.page_size):
                files.extend(
                    (e["FullPath"], parse_mtime_ns(e["Mtime"]))
                    for e in entries
                    if not e.get("Mode", 0) & DIR_MODE
                )
        doomed = expired_files(files, now_ns, self.meta_log_keep_ms)
        for path in doomed:
            if self._stop.is_set():
                break
            self.filer.delete(path)
        return len(doomed)

    def sweep(self, now_ns: int | None = None) -> int:
        """One pass over every partition of every topic with a retention; objects removed."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        total = 0
        for topic, count in self.partitions.items():
            for p in range(count):
                if self._stop.is_set():
                    return total
                try:
                    n, size, kept = self.sweep_partition(topic, p, now_ns)
                except (OSError, ValueError, KeyError, RetentionError) as exc:
                    self.metrics.errors.labels(topic).inc()
                    log.warning("retention: %s[%d] not swept, retrying next pass: %s", topic, p, exc)
                    continue
                self.metrics.partition_objects.labels(topic, str(p)).set(kept)
                name = f"{topic}[{p}]"
                if kept > self.max_objects:
                    if name not in self.crowded:
                        log.warning(
                            "retention: %s holds more than %d batch objects: Tansu's fetches slow down with the "
                            "count (bench/RESULTS.md, soak); shorten its --retention-ms",
                            name,
                            self.max_objects,
                        )
                    self.crowded[name] = kept
                else:
                    self.crowded.pop(name, None)
                if n:
                    self.metrics.deleted_objects.labels(topic).inc(n)
                    self.metrics.deleted_bytes.labels(topic).inc(size)
                    log.info("retention: %s[%d] removed %d expired batches (%d bytes)", topic, p, n, size)
                total += n
        try:
            logs = self.prune_meta_log(now_ns)
        except (OSError, ValueError, KeyError, RetentionError) as exc:
            self.metrics.errors.labels("filer-meta-log").inc()
            log.warning("retention: filer metadata log not pruned, retrying next pass: %s", exc)
            logs = 0
        if logs:
            self.metrics.deleted_objects.labels("filer-meta-log").inc(logs)
        if total or logs:
            try:
                self.filer.vacuum(self.vacuum_threshold)
            except OSError as exc:
                log.warning("retention: volume vacuum failed, retrying next pass: %s", exc)
        self.metrics.last_pass.set(time.time())
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sweep()

    def start(self) -> RetentionJanitor:
        kept = {t: ms for t, ms in self.retention_ms.items() if ms >= 0}
        log.info(
            "retention janitor: every %.0f s, retention_ms %s (other topics kept)", self.interval_s, kept
        )
        self._thread = threading.Thread(target=self._run, name="retention-janitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
