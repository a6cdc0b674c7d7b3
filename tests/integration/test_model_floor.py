"""The shipped model on a fixed real subset (the held-out test split of nc_phasenet + stead50), scored
through ONNX Runtime like the live path: ROC-AUC and early-detection floors a little below what was
measured when it was shipped (see MODEL_CARD.md), so a regressed model fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.contract import DEFAULT_MODEL_DIR
from models.data import load_dataset, screen_noise, select
from models.evaluate import metrics, prepare, score_ours
from models.runtime import StreamingModel

pytestmark = pytest.mark.integration

# measured on the test split at release (MODEL_CARD.md); floors leave a margin for ORT/BLAS differences
# (1.2.0: AUC 0.9963; 1%: 0.903 / 0.968 / 0.968; 0.1%: 0.871 / 0.935 at P+0.5 / 1 / 2 s; one event = 0.032)
FLOOR_AUC = 0.98  # the target
FLOOR_DET = {
    "far_0.01": {"P+0.5s": 0.87, "P+1s": 0.93, "P+2s": 0.93},
    "far_0.001": {"P+0.5s": 0.83, "P+1s": 0.90},
}


@pytest.fixture(scope="module")
def test_metrics(shared: Path) -> dict:
    recs = [r for d in ("nc_phasenet", "stead50") for r in load_dataset(shared / "data" / d)]
    chosen, _ = screen_noise(select(recs, "test"))  # as `eew model evaluate` does by default
    assert len(chosen) >= 30
    model = StreamingModel(DEFAULT_MODEL_DIR, providers=["CPUExecutionProvider"], intra_op_threads=2)
    return metrics(score_ours(model, prepare(chosen, seed=2024)), model.contract.thresholds.detection)


def test_roc_auc_floor(test_metrics: dict) -> None:
    assert test_metrics["roc_auc"] >= FLOOR_AUC, test_metrics["roc_auc"]


@pytest.mark.parametrize("far", sorted(FLOOR_DET))
def test_early_detection_floor(test_metrics: dict, far: str) -> None:
    ed = test_metrics["early_detection"][far]
    assert ed["realised_noise_far"] <= float(far.split("_")[1])
    for k, floor in FLOOR_DET[far].items():
        assert ed[k] >= floor, (k, ed[k])


def test_p_onset_error_floor(test_metrics: dict) -> None:
    assert test_metrics["p_onset_error_s"]["within_0.5s"] >= 0.6


def test_fires_on_synthetic_events_and_not_on_synthetic_noise() -> None:
    """The demo without ../shared replays models.synthetic records: the model must fire on events at
    SNR >= 10 within a few seconds of P and stay below its threshold on their noise."""
    from models import synthetic

    model = StreamingModel(DEFAULT_MODEL_DIR, providers=["CPUExecutionProvider"])
    thr = model.contract.thresholds.detection
    rng = np.random.default_rng(11)
    fired, quiet = 0, 0
    n = 20
    for _ in range(n):
        x = synthetic.event_record(
            rng, 6000, p_s=40.0, snr=rng.uniform(10, 100), noise_level=10 ** rng.uniform(0, 4)
        )
        ev, _ = model.score_stream(x[None].astype(np.float32))
        fired += bool(ev[0, 40:43].max() >= thr)  # chunks ending at P+1, P+2, P+3 s
        quiet += bool(ev[0, 10:39].max() < thr)  # after warm-up, before P
    assert fired >= 0.9 * n and quiet >= 0.9 * n, (fired, quiet)
