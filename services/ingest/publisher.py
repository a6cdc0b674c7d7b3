"""Kafka adapter: waveform packets to ``WAVEFORMS`` keyed by station, rejects to ``DEADLETTER``.

Every send's delivery future is checked: an acknowledgement or failure calls ``on_done(ok)``
(from the producer's I/O thread), failures are counted and logged with the NSLC. An
acknowledgement without an offset (see ``services.common.kafka.confirmed``) counts as a failure,
so the caller fetches and sends the record again. The number of
messages in flight is bounded by the producer's buffer: ``send`` blocks while it is full
(backpressure reaches the SeedLink socket or the replay loop), and gives up after the
producer's ``max_block_ms`` (counted as a failure).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

from services.common.codec import Packet, encode_packet
from services.common.domain import stream_key
from services.common.exceptions import UnconfirmedDelivery
from services.common.kafka import confirmed
from services.common.topics import DEADLETTER, WAVEFORMS
from services.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

DoneCallback = Callable[[bool], None]
MSEED_CONTENT_TYPE = b"application/vnd.fdsn.mseed"
PACKET_CONTENT_TYPE = b"application/x-protobuf; messageType=eew.v1.WaveformPacket"
OCTET_CONTENT_TYPE = b"application/octet-stream"


def _key_of(nslc: str) -> bytes | None:
    parts = nslc.split(".")
    if len(parts) == 4 and parts[1] and len(parts[3]) >= 2:
        return stream_key(*parts).encode()
    return None


class Publisher:
    """Publishes packets and dead letters through one (idempotent, acks=all) producer."""

    def __init__(
        self,
        producer: Any,
        metrics: IngestMetrics,
        waveform_topic: str = WAVEFORMS.name,
        deadletter_topic: str = DEADLETTER.name,
        producer_factory: Callable[[], Any] | None = None,
        close_timeout_s: float = 1.0,
    ) -> None:
        self.producer = producer
        self.producer_factory = producer_factory
        self.close_timeout_s = close_timeout_s  # how long a replaced producer may hand over what it holds
        self.metrics = metrics
        self.waveform_topic = waveform_topic
        self.deadletter_topic = deadletter_topic
        self._lock = threading.Lock()
        self._in_flight = 0
        self.acked = 0
        self.failed = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def publish(self, packet: Packet, on_done: DoneCallback | None = None) -> bool:
        """Send one packet keyed ``NET.STA.LOC.BI?``; False when it could not even be queued."""
        try:
            value = encode_packet(packet)
        except (ValueError, TypeError) as exc:
            log.error("%s: cannot encode packet (%s): dead-lettered", packet.nslc, exc)
            self.metrics.rejected.labels("encode_error").inc()
            return self.dead_letter(
                b"", "encode_error", packet.nslc, str(exc), packet.source, on_done=on_done
            )
        headers = [("nslc", packet.nslc.encode()), ("content-type", PACKET_CONTENT_TYPE)]
        ok = self._send(
            self.waveform_topic, packet.key.encode(), value, headers, packet.nslc, on_done, waveform=True
        )
        if ok:
            self.metrics.packets_out.inc()
            self.metrics.samples_out.inc(len(packet.data))
        return ok

    def dead_letter(
        self,
        payload: bytes,
        reason: str,
        nslc: str,
        detail: str = "",
        source: str = "",
        content_type: bytes = OCTET_CONTENT_TYPE,
        on_done: DoneCallback | None = None,
    ) -> bool:
        """Send rejected input with its ``reason`` header to the dead-letter topic."""
        headers = [
            ("reason", reason.encode()),
            ("nslc", nslc.encode(errors="replace")),
            ("detail", detail[:500].encode(errors="replace")),
            ("source", source.encode(errors="replace")),
            ("content-type", content_type),
        ]
        ok = self._send(self.deadletter_topic, _key_of(nslc), payload, headers, nslc, on_done, waveform=False)
        if ok:
            self.metrics.deadletters.inc()
        return ok

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        nslc: str,
        on_done: DoneCallback | None,
        waveform: bool,
    ) -> bool:
        sent_at = time.monotonic()
        with self._lock:
            self._in_flight += 1

        def failed(exc: BaseException) -> None:
            log.error("%s: delivery to %s failed: %r", nslc, topic, exc)
            self.metrics.publish_failures.labels(topic).inc()
            with self._lock:
                self._in_flight -= 1
                self.failed += 1
            if on_done is not None:
                on_done(False)

        def ok(meta: Any) -> None:
            if not confirmed(meta):
                failed(UnconfirmedDelivery(f"acknowledged without an offset ({meta!r})"))
                return
            self.metrics.ack_latency.observe(time.monotonic() - sent_at)
            if waveform:
                self.metrics.packets_acked.inc()
            with self._lock:
                self._in_flight -= 1
                self.acked += 1
            if on_done is not None:
                on_done(True)

        try:
            future = self.producer.send(topic, value=value, key=key, headers=headers)
        except (KafkaError, ValueError, TypeError, AssertionError) as exc:
            # Buffer full past max_block_ms, record too large, producer closed: count, never crash.
            failed(exc)
            return False
        future.add_callback(ok)
        future.add_errback(failed)
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything sent so far is acknowledged or failed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            log.error(
                "flush did not complete within %.1f s: %r (%d in flight)", timeout_s, exc, self.in_flight
            )
            return False
        # Delivery callbacks run on the producer's thread and may trail flush() by a moment.
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.in_flight == 0

    def renew(self) -> bool:
        """Replace the producer with a fresh one (after failures; e.g. the cluster was replaced).

        A producer whose idempotence state the broker no longer knows can keep failing every
        send; a new producer starts a new session. Call when nothing is in flight. False when
        no factory was given or the broker cannot be reached yet (the old producer stays).
        """
        if self.producer_factory is None:
            return False
        try:
            fresh = self.producer_factory()
        except KafkaError as exc:
            log.warning("cannot create a new producer yet: %r", exc)
            return False
        old, self.producer = self.producer, fresh
        try:
            old.close(timeout=self.close_timeout_s)
        except KafkaError as exc:
            log.warning("closing the old producer: %r", exc)
        log.info("producer renewed after delivery failures")
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush and close the producer."""
        self.flush(timeout_s)
        try:
            self.producer.close(timeout=timeout_s)
        except KafkaError as exc:
            log.error("producer close: %r", exc)
