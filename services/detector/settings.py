"""Settings of ``eew detect`` (environment ``EEW_*`` or flags ``--kebab-case``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from models.contract import DEFAULT_MODEL_DIR, ModelContract
from services.common.settings import ServiceSettings
from services.common.topics import DEADLETTER, SCORES, WAVEFORMS
from services.detector.core import CoreConfig
from services.detector.exceptions import DetectorConfigError


class DetectorSettings(ServiceSettings):
    """Every knob of the detector; model-dependent defaults come from the model's contract.json."""

    client_id: str = Field("eew-detector", description="Kafka client id.")
    group_id: str = Field("eew-detector", description="Consumer group of the waveform topic.")
    waveforms_topic: str = Field(WAVEFORMS.name, description="Topic of WaveformPacket records (input).")
    scores_topic: str = Field(SCORES.name, description="Topic of StationScore records (output).")
    deadletter_topic: str = Field(DEADLETTER.name, description="Topic for records that cannot be used.")
    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="Folder with contract.json and the ONNX model.")
    providers: str = Field(
        "",
        description="Comma-separated ONNX Runtime providers; empty: CUDAExecutionProvider (when this "
        "onnxruntime build offers it) then CPUExecutionProvider.",
    )
    intra_op_threads: int = Field(0, description="ONNX Runtime intra-op threads (0: its default).")
    stride_samples: int = Field(
        0,
        description="Samples per scored chunk (the stride); 0: the contract's chunk_samples. Multiple of step.",
    )
    max_batch: int = Field(512, description="Most stations per model call.")
    detection_threshold: float | None = Field(
        None, description="Override of the contract's detection threshold."
    )
    p_pick_threshold: float | None = Field(None, description="Override of the contract's P-pick threshold.")
    rearm_threshold: float | None = Field(
        None,
        description="Probability below which a triggered station counts as quiet (default: half of detection).",
    )
    rearm_s: float = Field(
        3.0, description="Seconds below the re-arm threshold before a station can trigger anew."
    )
    pick_lookback_s: float = Field(10.0, description="How far before a trigger the P onset is searched.")
    clip_counts: float = Field(
        8_000_000.0,
        description="A velocity sample at or above this |count| is clipped (default ~95 % of a 24-bit "
        "digitiser); a run of clip-run samples at a packet's extreme counts too.",
    )
    clip_run: int = Field(5, description="Consecutive samples at a packet's extreme that mean clipping.")
    clip_hold_s: float = Field(
        60.0,
        description="After clipping, a velocity sensor ranks below its site's accelerometer this long "
        "(the accelerometer's triggers count instead).",
    )
    site_live_s: float = Field(
        10.0,
        description="A sensor scored within this much data time is live at its site: a site's "
        "accelerometer does not trigger while its velocity sensor is live and unclipped.",
    )
    warmup_s: float | None = Field(
        None, description="Override of the contract's warm-up (no triggers before it)."
    )
    buffer_s: float = Field(45.0, description="Seconds of data buffered per station ahead of the next chunk.")
    max_gap_s: float = Field(
        20.0, description="Longer gaps restart a station (state reset); a component silent this long is dead."
    )
    max_component_wait_s: float = Field(
        10.0,
        description="Seconds of data on the other components after which a missing one is gap/dead-filled.",
    )
    max_future_s: float = Field(
        600.0, description="Packets ending further than this past the wall clock are refused."
    )
    resync_packets: int = Field(3, description="Consistent packets needed to accept a station's time jump.")
    max_stations: int = Field(5000, description="Most stations buffered at once (more are refused).")
    station_idle_s: float = Field(
        300.0,
        description="A station receiving nothing for this long (wall clock) is dropped; frees its offsets.",
    )
    max_poll_records: int = Field(2000, description="Most records per consumer poll.")
    poll_timeout_ms: int = Field(100, description="Consumer poll timeout.")
    max_rounds_per_poll: int = Field(
        30, description="Most chunks scored per station between polls; with more ready, consumption pauses."
    )
    max_unacked: int = Field(
        20000, description="Most unacknowledged messages before the loop flushes and waits."
    )
    commit_interval_s: float = Field(1.0, description="Seconds between flush-and-commit cycles.")
    flush_timeout_s: float = Field(
        5.0, description="Longest wait for the broker to acknowledge sent messages."
    )
    data_timeout_s: float = Field(60.0, description="/readyz fails when no waveform arrived for this long.")
    broker_timeout_s: float = Field(30.0, description="How long to wait for the broker at start-up.")

    def provider_list(self) -> list[str] | None:
        names = [p.strip() for p in self.providers.split(",") if p.strip()]
        return names or None

    def core_config(self, contract: ModelContract) -> CoreConfig:
        """The core's configuration: the contract's tensor facts plus these settings."""
        stride = self.stride_samples or contract.chunk_samples
        if stride % contract.step_samples:
            raise DetectorConfigError(
                f"stride {stride} is not a multiple of step_samples {contract.step_samples}"
            )
        if contract.sampling_rate_hz != int(contract.sampling_rate_hz):
            raise DetectorConfigError(f"model rate {contract.sampling_rate_hz} Hz is not a whole number")
        cfg = CoreConfig(
            state_size=contract.state_size,
            detection_threshold=self.detection_threshold or contract.thresholds.detection,
            p_pick_threshold=self.p_pick_threshold or contract.thresholds.p_pick,
            warmup_s=contract.warmup_s if self.warmup_s is None else self.warmup_s,
            sampling_rate_hz=int(contract.sampling_rate_hz),
            chunk_samples=stride,
            step_samples=contract.step_samples,
            rearm_threshold=self.rearm_threshold,
            rearm_s=self.rearm_s,
            clip_counts=self.clip_counts,
            clip_run=self.clip_run,
            clip_hold_s=self.clip_hold_s,
            site_live_s=self.site_live_s,
            pick_lookback_s=self.pick_lookback_s,
            buffer_s=self.buffer_s,
            max_gap_s=self.max_gap_s,
            max_component_wait_s=self.max_component_wait_s,
            max_future_s=self.max_future_s,
            resync_packets=self.resync_packets,
            max_batch=self.max_batch,
            max_stations=self.max_stations,
            model_id=contract.model_id,
            model_version=contract.model_version,
        )
        if [c.upper() for c in contract.component_order] != ["Z", "N", "E"]:
            raise DetectorConfigError(
                f"model component order {contract.component_order}: the core feeds Z, N, E"
            )
        try:
            cfg.validate()
        except ValueError as exc:
            raise DetectorConfigError(str(exc)) from exc
        return cfg
