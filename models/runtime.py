"""The one scoring path: an ONNX Runtime session of the stateful model, used by the live
detector and by the evaluation alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.contract import DEFAULT_MODEL_DIR, ModelContract, check_session, file_sha256, load_contract
from models.exceptions import ContractError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    """Outputs of one call for a batch of stations."""

    event_prob: np.ndarray  # (B,)
    p_prob: np.ndarray  # (B, steps)
    state: np.ndarray  # (B, state_size)


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


class StreamingModel:
    """Loads ``contract.json`` + ONNX, checks one against the other, and scores chunks.

    ``provider`` is the execution provider actually in use: onnxruntime-gpu lists CUDA as
    available on machines without a GPU and silently falls back to CPU, so the session's own
    provider list is what counts.
    """

    def __init__(
        self,
        model_dir: Path = DEFAULT_MODEL_DIR,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.contract: ModelContract = load_contract(self.model_dir)
        onnx_path = self.contract.onnx_path(self.model_dir)
        if not onnx_path.exists():
            raise ContractError(f"model file {onnx_path} missing")
        # checksum before parsing: a truncated or altered file is a contract error, not a parser crash
        digest = file_sha256(onnx_path)
        if digest != self.contract.sha256:
            raise ContractError(f"{onnx_path}: sha256 {digest} != contract {self.contract.sha256}")
        opts = ort.SessionOptions()
        if intra_op_threads:
            opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), sess_options=opts, providers=providers or default_providers()
        )
        check_session(self.contract, self.session, onnx_path)
        self.provider: str = self.session.get_providers()[0]
        log.info(
            "model %s %s loaded from %s; execution provider in use: %s",
            self.contract.model_id,
            self.contract.model_version,
            onnx_path,
            self.provider,
        )

    @property
    def state_size(self) -> int:
        return self.contract.state_size

    def initial_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.contract.state_size), dtype=np.float32)

    def step(self, wave: np.ndarray, state: np.ndarray) -> StepResult:
        """Score one chunk for each of B stations: wave (B, 3, chunk) raw counts, state (B, S)."""
        c = self.contract
        if wave.ndim != 3 or wave.shape[1] != 3 or wave.shape[2] % c.step_samples:
            raise ValueError(f"wave shape {wave.shape}: need (B, 3, k*{c.step_samples})")
        if state.shape != (wave.shape[0], c.state_size):
            raise ValueError(f"state shape {state.shape} != ({wave.shape[0]}, {c.state_size})")
        ev, pp, st = self.session.run(
            ["event_prob", "p_prob", "state_out"],
            {
                "wave": np.ascontiguousarray(wave, dtype=np.float32),
                "state_in": np.ascontiguousarray(state, dtype=np.float32),
            },
        )
        return StepResult(event_prob=ev, p_prob=pp, state=st)

    def score_stream(self, wave: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Score whole streams chunk by chunk (evaluation helper, same path as live).

        wave (B, 3, N) with N a multiple of ``chunk``; returns event_prob (B, N/chunk) at the
        end of each chunk and p_prob (B, N/step_samples).
        """
        chunk = chunk or self.contract.chunk_samples
        b, _, n = wave.shape
        if n % chunk:
            raise ValueError(f"stream length {n} is not a multiple of chunk {chunk}")
        state = self.initial_state(b)
        evs, pps = [], []
        for i in range(0, n, chunk):
            r = self.step(wave[:, :, i : i + chunk], state)
            state = r.state
            evs.append(r.event_prob)
            pps.append(r.p_prob)
        return np.stack(evs, axis=1), np.concatenate(pps, axis=1)
