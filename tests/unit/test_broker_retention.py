"""The durable broker's retention rules (pure core) and the filer-time parser."""

from __future__ import annotations

import pytest

from services.broker.janitor import parse_mtime_ns
from services.broker.retention import BatchObject, expired, expired_files, is_batch, parse_overrides, resolve
from services.common.exceptions import ConfigError
from services.common.topics import ALL_TOPICS, SCORES, WAVEFORMS

S = 1_000_000_000


def objs(*ages_s: float, now_ns: int = 1000 * S) -> list[BatchObject]:
    """Batches at base offsets 0, 10, 20... written ``age`` seconds before ``now_ns``."""
    return [BatchObject(f"{10 * i:020d}.batch", now_ns - int(a * S), 100) for i, a in enumerate(ages_s)]


def test_expired_prefix_only_and_never_the_newest() -> None:
    page = objs(50, 40, 30, 20, 10)
    doomed, read_on = expired(page, 1000 * S, 25_000, more_follow=False)
    assert [o.base_offset for o in doomed] == [0, 10, 20]
    assert not read_on
    # everything expired: the newest stays (Kafka's active segment)
    doomed, _ = expired(objs(50, 40), 1000 * S, 1_000, more_follow=False)
    assert [o.base_offset for o in doomed] == [0]


def test_no_holes_when_an_older_object_is_newer() -> None:
    """An object written later than a following one stops the prefix (offsets stay contiguous)."""
    page = objs(50, 5, 40, 30)
    doomed, _ = expired(page, 1000 * S, 25_000, more_follow=False)
    assert [o.base_offset for o in doomed] == [0]


def test_paging_reads_on_only_when_the_whole_page_expired() -> None:
    doomed, read_on = expired(objs(50, 40), 1000 * S, 1_000, more_follow=True)
    assert len(doomed) == 2 and read_on
    doomed, read_on = expired(objs(50, 1), 1000 * S, 10_000, more_follow=True)
    assert len(doomed) == 1 and not read_on


def test_kept_forever_and_empty() -> None:
    assert expired(objs(1e9), 1000 * S, -1, more_follow=True) == ([], False)
    assert expired([], 1000 * S, 1, more_follow=False) == ([], False)


def test_batch_names() -> None:
    assert is_batch("00000000000000000040.batch")
    assert not is_batch("watermark.json") and not is_batch("40.batch")
    with pytest.raises(ValueError, match="not a Tansu batch"):
        _ = BatchObject("x.batch", 0, 0).base_offset


def test_overrides_and_resolve() -> None:
    assert parse_overrides([f"{WAVEFORMS.name}=3600000", f"{SCORES.name}=-1"]) == {
        WAVEFORMS.name: 3_600_000,
        SCORES.name: -1,
    }
    for bad in ["eew.waveforms.v1", "eew.waveforms.v1=1h", "=5", "eew.waveforms.v1=-5"]:
        with pytest.raises(ConfigError, match="TOPIC=MILLISECONDS"):
            parse_overrides([bad])
    r = resolve(ALL_TOPICS, {WAVEFORMS.name: 60_000})
    assert r[WAVEFORMS.name] == 60_000 and r[SCORES.name] == SCORES.retention_ms
    with pytest.raises(ConfigError, match="unknown topic 'nope'"):
        resolve(ALL_TOPICS, {"nope": 1})


def test_filer_mtime() -> None:
    assert parse_mtime_ns("1970-01-01T00:00:10Z") == 10 * S
    assert parse_mtime_ns("1970-01-01T00:00:10.257055017Z") == 10 * S + 257_055_017
    assert parse_mtime_ns("1970-01-01T00:00:10.5Z") == 10 * S + 500_000_000


def test_filer_log_files_expire_but_the_newest_stays() -> None:
    files = [("/l/d1/10-00.x", 100 * S), ("/l/d1/10-01.x", 160 * S), ("/l/d2/00-00.x", 900 * S)]
    assert expired_files(files, 1000 * S, 200_000) == ["/l/d1/10-00.x", "/l/d1/10-01.x"]
    assert expired_files(files, 10_000 * S, 0) == ["/l/d1/10-00.x", "/l/d1/10-01.x"]
    assert expired_files(files[:1], 10_000 * S, 0) == []
    assert expired_files(files, 10_000 * S, -1) == []
