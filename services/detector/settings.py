"""Settings of ``eew detect`` (environment ``EEW_*`` or flags ``--kebab-case``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from models.contract import DEFAULT_MODEL_DIR, ModelContract
from services.common.loop import LoopConfig
from services.common.settings import ServiceSettings
from services.common.topics import DEADLETTER, SCORES, WAVEFORMS
from services.detector.core import CoreConfig, CoreTuning
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
    detection_threshold: float | None = Field(
        None, description="Override of the contract's detection threshold."
    )
    p_pick_threshold: float | None = Field(None, description="Override of the contract's P-pick threshold.")
    warmup_s: float | None = Field(
        None, description="Override of the contract's warm-up (no triggers before it)."
    )
    core: CoreTuning = Field(
        CoreTuning(), description="The core's knobs (services.detector.core)."
    )
    station_idle_s: float = Field(
        300.0,
        description="A station receiving nothing for this long (wall clock) is dropped; frees its offsets.",
    )
    max_rounds_per_poll: int = Field(
        30, description="Most chunks scored per station between polls; with more ready, consumption pauses."
    )
    loop: LoopConfig = Field(LoopConfig(), description="The consume loop (services.common.loop).")
    data_timeout_s: float = Field(60.0, description="/readyz fails when no waveform arrived for this long.")

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
        if [c.upper() for c in contract.component_order] != ["Z", "N", "E"]:
            raise DetectorConfigError(
                f"model component order {contract.component_order}: the core feeds Z, N, E"
            )
        try:
            tuning = self.core.model_dump()
            if tuning["retrigger_threshold"] is None:  # the setting overrides the contract's level
                tuning["retrigger_threshold"] = contract.thresholds.retrigger
            return CoreConfig(
                **tuning,
                state_size=contract.state_size,
                detection_threshold=self.detection_threshold or contract.thresholds.detection,
                p_pick_threshold=self.p_pick_threshold or contract.thresholds.p_pick,
                warmup_s=contract.warmup_s if self.warmup_s is None else self.warmup_s,
                sampling_rate_hz=int(contract.sampling_rate_hz),
                chunk_samples=stride,
                step_samples=contract.step_samples,
                model_id=contract.model_id,
                model_version=contract.model_version,
            )
        except ValidationError as exc:
            raise DetectorConfigError(f"detector settings: {exc}") from exc
