"""The tensor contract that lives beside the weights (``contract.json``), and its start-up check.

The model is *stateful*: each call scores the newest ``chunk_samples`` of every station and
carries a per-station state vector (LSTM state, running normalisation, the CNN's left context)
to the next call. Scoring a stream chunk by chunk gives the same numbers as scoring it whole,
so the live detector and the evaluation score exactly the same way.

Inputs:  ``wave``  float32 (batch, 3, chunk)  raw counts, components in ``component_order``,
                   at ``sampling_rate_hz``; a dead/missing component is all zeros; samples in a
                   gap hold the last value seen (``gap_fill``).
         ``state_in`` float32 (batch, state_size); zeros for a station seen for the first time.
Outputs: ``event_prob`` float32 (batch,)        probability that earthquake signal is present
                   at the end of the chunk;
         ``p_prob`` float32 (batch, chunk / step_samples)  per-step P-onset probability;
         ``state_out`` float32 (batch, state_size).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.exceptions import ContractError

DEFAULT_MODEL_DIR = Path(__file__).parent / "eew_cnnlstm_v1"


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str = "float32"
    shape: list[int | str] = Field(description="Dimensions; strings name dynamic axes.")


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True)

    detection: float = Field(description="event_prob at or above which a station triggers.")
    p_pick: float = Field(description="p_prob at or above which a P onset is picked.")
    retrigger: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="p_prob at or above which a new P inside an episode re-triggers a station "
        "(services.common.triggers.onset); None: p_pick. Chosen on validation sequences.",
    )
    note: str = Field("", description="How the thresholds were chosen (e.g. noise false-alarm rate).")

    @property
    def retrigger_level(self) -> float:
        """The re-trigger level in force: ``retrigger``, else ``p_pick``."""
        return self.p_pick if self.retrigger is None else self.retrigger


class ModelContract(BaseModel):
    """Everything a consumer of the ONNX file must know, checked at detector start-up."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    model_version: str
    onnx_file: str
    sha256: str = Field(description="SHA-256 of the .onnx file (weights embedded).")
    sampling_rate_hz: float
    component_order: list[str] = Field(description="Channel order of the wave input, e.g. Z, N, E.")
    chunk_samples: int = Field(description="Default samples per call (the stride).")
    step_samples: int = Field(description="Samples per output step; chunk must be a multiple.")
    state_size: int
    warmup_s: float = Field(description="Seconds of data after a (re)start before scores are trusted.")
    gap_fill: str = "hold_last"
    normalisation: str = Field(description="What the graph does to raw counts (documentation).")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    thresholds: Thresholds
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def stride_s(self) -> float:
        return self.chunk_samples / self.sampling_rate_hz

    def onnx_path(self, model_dir: Path) -> Path:
        return Path(model_dir) / self.onnx_file


def load_contract(model_dir: Path = DEFAULT_MODEL_DIR) -> ModelContract:
    path = Path(model_dir) / "contract.json"
    if not path.exists():
        raise ContractError(f"no contract.json in {model_dir}")
    return ModelContract.model_validate(json.loads(path.read_text()))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_ORT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int64": "tensor(int64)"}


def check_session(contract: ModelContract, session: Any, onnx_path: Path | None = None) -> None:
    """Raise ContractError unless the ONNX Runtime session matches the contract exactly.

    Checks the file checksum, input/output names, element types, ranks and fixed dimensions.
    """
    if onnx_path is not None:
        digest = file_sha256(onnx_path)
        if digest != contract.sha256:
            raise ContractError(f"{onnx_path}: sha256 {digest} != contract {contract.sha256}")
    for kind, declared, actual in (
        ("input", contract.inputs, session.get_inputs()),
        ("output", contract.outputs, session.get_outputs()),
    ):
        by_name = {a.name: a for a in actual}
        if set(by_name) != {d.name for d in declared}:
            raise ContractError(f"{kind} names {sorted(by_name)} != contract {[d.name for d in declared]}")
        for spec in declared:
            a = by_name[spec.name]
            if a.type != _ORT_TYPES.get(spec.dtype, spec.dtype):
                raise ContractError(f"{kind} {spec.name}: type {a.type} != {spec.dtype}")
            if len(a.shape) != len(spec.shape):
                raise ContractError(f"{kind} {spec.name}: rank {len(a.shape)} != {len(spec.shape)}")
            for i, (got, want) in enumerate(zip(a.shape, spec.shape, strict=True)):
                if isinstance(want, int) and got != want:
                    raise ContractError(f"{kind} {spec.name}: dim {i} is {got}, contract says {want}")
                if isinstance(want, str) and isinstance(got, int):
                    raise ContractError(f"{kind} {spec.name}: dim {i} must be dynamic ({want}), is fixed {got}")
