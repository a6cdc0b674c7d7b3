"""Waveform packet codec: exact round trips and a clear reason for each kind of bad message."""

import numpy as np
import pytest

from services.common.codec import Packet, decode_packet, encode_packet
from services.common.exceptions import DecodeError
from services.common.pb.eew.v1 import messages_pb2 as pb


def _packet(data: np.ndarray, channel: str = "HHZ") -> Packet:
    return Packet("NC", "MEM", "", channel, 1_700_000_000_123_000_000, 100.0, data, 5, 42, "test")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64])
def test_round_trip_keeps_samples_and_metadata(dtype: type) -> None:
    data = (np.arange(-50, 50) * 1000).astype(dtype)
    back = decode_packet(encode_packet(_packet(data)))
    np.testing.assert_array_equal(back.data, data.astype(back.data.dtype))
    assert back.data.dtype.kind == ("i" if np.issubdtype(dtype, np.integer) else "f")
    assert (back.start_time_ns, back.sampling_rate, back.sequence, back.nslc) == (
        1_700_000_000_123_000_000, 100.0, 42, "NC.MEM..HHZ")
    assert back.end_time_ns == 1_700_000_000_123_000_000 + 1_000_000_000


def test_binary_payload_is_compact() -> None:
    """100 int32 samples cost 400 bytes plus a small header, not a JSON float list."""
    raw = encode_packet(_packet(np.zeros(100, np.int32)))
    assert len(raw) < 400 + 80


def test_packet_key_is_the_sensors_stream_key() -> None:
    """All components of one sensor share the Kafka key (``services.common.domain.stream_key``)."""
    z, e = _packet(np.zeros(2, np.int32), "HHZ"), _packet(np.zeros(2, np.int32), "HHE")
    assert z.key == e.key == "NC.MEM..HH?"
    assert _packet(np.zeros(2, np.int32), "HNZ").key != z.key


def _raw(**fields: object) -> bytes:
    base = dict(schema_version=1, network="NC", station="MEM", channel="HHZ", start_time_ns=1,
                sampling_rate=100.0, encoding=pb.SAMPLE_ENCODING_INT32_LE, num_samples=2, samples=b"\0" * 8)
    base.update(fields)
    return pb.WaveformPacket(**base).SerializeToString()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xff\xff\xff garbage", "malformed_protobuf"),
        (_raw(schema_version=2), "schema_version"),
        (_raw(station=""), "missing_id"),
        (_raw(encoding=0), "unknown_encoding"),
        (_raw(sampling_rate=0.0), "bad_sampling_rate"),
        (_raw(sampling_rate=float("nan")), "bad_sampling_rate"),
        (_raw(num_samples=3), "length_mismatch"),
        (_raw(num_samples=2_000_000, samples=b""), "oversized"),
    ],
)
def test_bad_messages_raise_decode_error_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_packet(raw)
    assert err.value.reason == reason
