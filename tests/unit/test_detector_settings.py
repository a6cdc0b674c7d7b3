"""Detector settings -> core configuration (contract defaults, overrides, validation), the
StationScore mapping, and the metrics bundle's translation of core counters."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from models.contract import ModelContract, Thresholds
from services.common.settings import load_settings
from services.detector import core as dc
from services.detector.exceptions import DetectorConfigError
from services.detector.metrics import DetectorMetrics
from services.detector.service import _LogBudget, score_message
from services.detector.settings import DetectorSettings


def contract(**kw: object) -> ModelContract:
    base: dict[str, object] = dict(
        model_id="m",
        model_version="9",
        onnx_file="model.onnx",
        sha256="0" * 64,
        sampling_rate_hz=100.0,
        component_order=["Z", "N", "E"],
        chunk_samples=100,
        step_samples=10,
        state_size=384,
        warmup_s=5.0,
        normalisation="",
        inputs=[],
        outputs=[],
        thresholds=Thresholds(detection=0.9, p_pick=0.7),
    )
    base.update(kw)
    return ModelContract(**base)  # type: ignore[arg-type]


def test_contract_defaults_and_flag_overrides() -> None:
    cfg = load_settings(DetectorSettings, []).core_config(contract())
    assert (cfg.chunk_samples, cfg.detection_threshold, cfg.p_pick_threshold, cfg.warmup_s) == (
        100,
        0.9,
        0.7,
        5.0,
    )
    assert (cfg.model_id, cfg.model_version, cfg.state_size) == ("m", "9", 384)
    s = load_settings(
        DetectorSettings,
        ["--stride-samples", "50", "--detection-threshold", "0.8", "--warmup-s", "0", "--max-batch", "7"],
    )
    cfg = s.core_config(contract())
    assert (cfg.chunk_samples, cfg.detection_threshold, cfg.warmup_s, cfg.max_batch) == (50, 0.8, 0.0, 7)


def test_the_contracts_retrigger_level_is_used_unless_a_setting_overrides_it() -> None:
    """The re-trigger level chosen on validation sequences lives in the contract beside p_pick (issue 13);
    without one the core re-triggers at p_pick, and --retrigger-threshold overrides either."""
    assert load_settings(DetectorSettings, []).core_config(contract()).retrigger_threshold is None
    with_level = contract(thresholds=Thresholds(detection=0.9, p_pick=0.7, retrigger=0.85))
    assert load_settings(DetectorSettings, []).core_config(with_level).retrigger_threshold == 0.85
    s = load_settings(DetectorSettings, ["--retrigger-threshold", "0.95"])
    assert s.core_config(with_level).retrigger_threshold == 0.95


def test_environment_variables_configure_the_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EEW_GROUP_ID", "g2")
    monkeypatch.setenv("EEW_MAX_GAP_S", "12")
    s = load_settings(DetectorSettings, [])
    assert s.group_id == "g2" and s.core_config(contract()).max_gap_s == 12.0


@pytest.mark.parametrize(
    ("args", "kw"),
    [
        (["--stride-samples", "55"], {}),  # not a multiple of the step
        (["--buffer-s", "10"], {}),  # cannot hold max_gap + wait + a piece
        ([], {"component_order": ["E", "N", "Z"]}),
        ([], {"sampling_rate_hz": 99.5}),
        (["--detection-threshold", "1.5"], {}),
    ],
)
def test_inconsistent_settings_are_refused(args: list[str], kw: dict[str, object]) -> None:
    with pytest.raises(DetectorConfigError):
        load_settings(DetectorSettings, args).core_config(contract(**kw))


def test_score_message_carries_every_field() -> None:
    s = dc.Score(
        key="NC.ABC.00.HH?", network="NC", station="ABC", location="00", channel_prefix="HH",
        window_start_ns=10, window_end_ns=20, probability=0.5, triggered=True, has_p_onset=True,
        p_onset_ns=15, p_onset_probability=0.75, ingest_time_ns=18, peak_amplitude=123.0, peak_displacement=4.5, components=2,
        warmed_up=True, new_trigger=True, model_id="m", model_version="9",
    )  # fmt: skip
    m = score_message(s, scored_time_ns=30)
    assert (m.schema_version, m.network, m.station, m.location, m.channel_prefix) == (
        1,
        "NC",
        "ABC",
        "00",
        "HH",
    )
    assert (m.window_start_time_ns, m.window_end_time_ns, m.p_onset_time_ns, m.scored_time_ns) == (
        10,
        20,
        15,
        30,
    )
    assert m.triggered and m.has_p_onset and m.probability == 0.5 and m.p_onset_probability == 0.75
    assert (m.ingest_time_ns, m.peak_amplitude, m.components, m.model_id, m.model_version) == (
        18,
        123.0,
        2,
        "m",
        "9",
    )
    assert m.peak_displacement == 4.5


def test_core_counters_become_metrics(registry: CollectorRegistry) -> None:
    m = DetectorMetrics(registry)
    m.add_core_counts(Counter({dc.C_GAPS: 2, dc.C_DEAD: 1, dc.C_CHUNKS: 5, "unknown": 3}), [4, 1])
    get = registry.get_sample_value
    assert get("eew_detector_gaps_total") == 2
    assert get("eew_detector_component_events_total", {"event": "dead"}) == 1
    assert get("eew_detector_windows_scored_total") == 5
    assert get("eew_detector_batch_size_count") == 2 and get("eew_detector_batch_size_sum") == 5


def test_log_budget_limits_repeated_warnings() -> None:
    b = _LogBudget(n=3, window_s=60.0)
    assert [b.allow("x") for _ in range(5)] == [True, True, True, False, False]
    assert b.allow("y")
