"""The settings pattern (``services.common.settings``): a core's config model nested in a service's
settings keeps flat flags, environment variables and keywords; nested forms work; names are unique."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError

from services.common.settings import CoreModel, ServiceSettings, group, knobs, load_settings, not_a_setting


class _Core(CoreModel):
    max_gap_s: float = Field(20.0, gt=0, description="gap")
    names: list[str] = Field(default_factory=list, description="names")


class _Settings(ServiceSettings):
    group_id: str = Field("g", description="group")
    core: _Core = Field(_Core(), description="the core")


def test_flat_flags_env_and_keywords_reach_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEW_MAX_GAP_S", "12")
    monkeypatch.setenv("EEW_NAMES", '["a", "b"]')
    s = load_settings(_Settings, [])
    assert s.core == _Core(max_gap_s=12.0, names=["a", "b"])
    assert load_settings(_Settings, ["--max-gap-s", "7"]).core.max_gap_s == 7.0  # flag beats env
    assert load_settings(_Settings, ["--core.max-gap-s", "8"]).core.max_gap_s == 8.0
    assert _Settings(max_gap_s=3).core == _Core(max_gap_s=3.0, names=["a", "b"])  # keyword beats env
    assert (
        load_settings(_Settings, ["--max-gap-s", "9"], max_gap_s=3).core.max_gap_s == 9.0
    )  # flag beats keyword


def test_a_bad_value_is_refused_by_the_one_declaration() -> None:
    with pytest.raises(ValidationError, match="max_gap_s"):
        _Settings(max_gap_s=-1)
    with pytest.raises(ValidationError):
        _Core(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        _Core().replace(max_gap_s=0)
    assert _Core().replace(max_gap_s=5).max_gap_s == 5.0


def test_flat_names_must_be_unique() -> None:
    with pytest.raises(TypeError, match="max_gap_s"):

        class _Clash(ServiceSettings):
            max_gap_s: float = 1.0
            core: _Core = Field(_Core())


def test_knobs_lists_group_members_under_flat_names() -> None:
    names = {k.name: k.group for k in knobs(_Settings)}
    assert names["group_id"] == "" and names["max_gap_s"] == "core" and "core" not in names


class _Other(ServiceSettings):
    core: _Core = Field(_Core(max_gap_s=99.0, names=["x"]), description="a service's own default")


def test_one_flag_overrides_one_knob_of_a_service_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEW_NAMES", '["y"]')
    assert load_settings(_Other, []).core == _Core(max_gap_s=99.0, names=["y"])
    assert load_settings(_Other, ["--max-gap-s", "1"]).core == _Core(max_gap_s=1.0, names=["y"])
    assert {k.name: k.default for k in knobs(_Other)}["max_gap_s"] == 99.0


def test_a_group_needs_a_default_instance() -> None:
    with pytest.raises(TypeError, match="default instance"):

        class _Factory(ServiceSettings):
            core: _Core = Field(default_factory=_Core)


def test_the_services_keep_their_flags_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real groups: ingest's live week of max_past_s survives one other flag; --replay is a flag."""
    from services.dashboard.settings import DashboardSettings
    from services.detector.settings import DetectorSettings
    from services.ingest.settings import LIVE_MAX_PAST_S, IngestSettings, ReplaySettings

    live = load_settings(IngestSettings, ["--max-future-s", "10"]).validation
    assert (live.max_future_s, live.max_past_s) == (10.0, LIVE_MAX_PAST_S)
    assert load_settings(ReplaySettings, []).validation.max_past_s == 0.0
    assert load_settings(DashboardSettings, ["--replay", "--gap-after-s", "3"]).core.replay
    monkeypatch.setenv("EEW_POLL_TIMEOUT_MS", "50")
    d = load_settings(DetectorSettings, ["--max-gap-s", "12"])
    assert (d.core.max_gap_s, d.loop.poll_timeout_ms) == (12.0, 50)


class _Prefixed(CoreModel):
    min_stations: int = Field(4, description="stations")
    queue_size: int = Field(10, description="queue")
    tokens: tuple[str, ...] = not_a_setting((), "parsed at start")


class _PrefixedSettings(ServiceSettings):
    min_stations: int = Field(1, description="a top-level knob of the same field name")
    loc: _Prefixed = group(_Prefixed(), "prefixed", prefix="locate_", names={"queue_size": "queue_size"})


def test_a_group_prefix_names_its_flags_environment_and_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [(k.name, k.group, k.attr) for k in knobs(_PrefixedSettings)][-2:] == [
        ("locate_min_stations", "loc", "min_stations"),
        ("queue_size", "loc", "queue_size"),
    ]  # tokens is no knob
    assert [k.env("EEW_") for k in knobs(_PrefixedSettings)][-2:] == ["EEW_LOCATE_MIN_STATIONS", "EEW_QUEUE_SIZE"]
    monkeypatch.setenv("EEW_LOCATE_MIN_STATIONS", "6")
    monkeypatch.setenv("EEW_QUEUE_SIZE", "3")
    monkeypatch.setenv("EEW_LOCATE_TOKENS", "not json")  # no knob: not read (would not parse)
    s = load_settings(_PrefixedSettings, [])
    assert (s.min_stations, s.loc) == (1, _Prefixed(min_stations=6, queue_size=3))
    assert load_settings(_PrefixedSettings, ["--locate-min-stations", "7"]).loc.min_stations == 7
    assert load_settings(_PrefixedSettings, ["--loc.min-stations", "8"]).loc.min_stations == 8
    assert _PrefixedSettings(locate_min_stations=9, min_stations=2).loc.min_stations == 9
    assert _PrefixedSettings(locate_min_stations=9, min_stations=2).min_stations == 2


def test_prefixed_flat_names_are_checked_too() -> None:
    with pytest.raises(TypeError, match="locate_min_stations"):

        class _Clash(ServiceSettings):
            locate_min_stations: int = 1
            loc: _Prefixed = group(_Prefixed(), "prefixed", prefix="locate_")

    with pytest.raises(TypeError, match="must end in"):

        class _Renamed(ServiceSettings):
            loc: _Prefixed = group(_Prefixed(), "prefixed", names={"queue_size": "queue_length"})

    with pytest.raises(TypeError, match="no field"):
        group(_Prefixed(), "prefixed", names={"missing": "missing"})
