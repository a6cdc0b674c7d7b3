"""Waveform packet encoding: NumPy arrays <-> protobuf, with validation.

Samples travel as little-endian binary (int32 where the data are integer counts, float32
otherwise), never as lists of floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError as PbDecodeError

from services.common.domain import nslc, stream_key
from services.common.exceptions import DecodeError
from services.common.pb.eew.v1 import messages_pb2 as pb

SCHEMA_VERSION = 1
MAX_SAMPLES_PER_PACKET = 1_000_000

_DTYPES = {
    pb.SAMPLE_ENCODING_INT32_LE: np.dtype("<i4"),
    pb.SAMPLE_ENCODING_FLOAT32_LE: np.dtype("<f4"),
    pb.SAMPLE_ENCODING_FLOAT64_LE: np.dtype("<f8"),
}


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded waveform packet."""

    network: str
    station: str
    location: str
    channel: str
    start_time_ns: int
    sampling_rate: float
    data: np.ndarray
    ingest_time_ns: int = 0
    sequence: int = 0
    source: str = ""

    @property
    def nslc(self) -> str:
        return nslc(self.network, self.station, self.location, self.channel)

    @property
    def key(self) -> str:
        """Kafka key of the packet's sensor, ``NET.STA.LOC.BI?`` (``services.common.domain``)."""
        return stream_key(self.network, self.station, self.location, self.channel)

    @property
    def end_time_ns(self) -> int:
        """Time just after the last sample."""
        return self.start_time_ns + int(round(len(self.data) * 1e9 / self.sampling_rate))


def encode_packet(p: Packet) -> bytes:
    """Serialise a packet; integer data stay int32, anything else becomes float32."""
    data = np.asarray(p.data)
    if np.issubdtype(data.dtype, np.integer):
        if data.size and (data.max() > np.iinfo(np.int32).max or data.min() < np.iinfo(np.int32).min):
            raise ValueError(f"{p.nslc}: integer samples outside int32")
        enc, raw = pb.SAMPLE_ENCODING_INT32_LE, data.astype("<i4").tobytes()
    elif data.dtype == np.float64:
        enc, raw = pb.SAMPLE_ENCODING_FLOAT64_LE, data.astype("<f8").tobytes()
    else:
        enc, raw = pb.SAMPLE_ENCODING_FLOAT32_LE, data.astype("<f4").tobytes()
    msg = pb.WaveformPacket(
        schema_version=SCHEMA_VERSION,
        network=p.network,
        station=p.station,
        location=p.location,
        channel=p.channel,
        start_time_ns=p.start_time_ns,
        sampling_rate=p.sampling_rate,
        encoding=enc,
        num_samples=len(data),
        samples=raw,
        ingest_time_ns=p.ingest_time_ns,
        sequence=p.sequence,
        source=p.source,
    )
    return msg.SerializeToString()


def decode_packet(raw: bytes) -> Packet:
    """Parse and validate a serialised packet; raise DecodeError(reason) on anything wrong."""
    msg = pb.WaveformPacket()
    try:
        msg.ParseFromString(raw)
    except (PbDecodeError, ValueError, TypeError) as exc:
        raise DecodeError("malformed_protobuf", str(exc)) from exc
    if msg.schema_version != SCHEMA_VERSION:
        raise DecodeError("schema_version", f"got {msg.schema_version}")
    if not msg.station or not msg.channel or not msg.network:
        raise DecodeError("missing_id", "network, station and channel are required")
    dtype = _DTYPES.get(msg.encoding)
    if dtype is None:
        raise DecodeError("unknown_encoding", str(msg.encoding))
    if not np.isfinite(msg.sampling_rate) or msg.sampling_rate <= 0 or msg.sampling_rate > 10_000:
        raise DecodeError("bad_sampling_rate", str(msg.sampling_rate))
    if msg.num_samples > MAX_SAMPLES_PER_PACKET:
        raise DecodeError("oversized", f"{msg.num_samples} samples")
    if len(msg.samples) != msg.num_samples * dtype.itemsize:
        raise DecodeError("length_mismatch", f"{len(msg.samples)} bytes for {msg.num_samples} samples")
    data = np.frombuffer(msg.samples, dtype=dtype)
    return Packet(
        network=msg.network,
        station=msg.station,
        location=msg.location,
        channel=msg.channel,
        start_time_ns=msg.start_time_ns,
        sampling_rate=msg.sampling_rate,
        data=data,
        ingest_time_ns=msg.ingest_time_ns,
        sequence=msg.sequence,
        source=msg.source,
    )
