"""The validation score that early stopping selects on: it must still rank models once the 1%-noise
detection numbers saturate, by what happens at the 0.1% operating point (the loudest noise window)."""

from __future__ import annotations

import numpy as np

from models.augment import STEP
from models.train import VAL_BEFORE, VAL_WARM, validation_metrics


def _logits(n_rec: int = 31, loud_noise: float | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = (VAL_BEFORE + 500) // STEP
    x = rng.normal(-4.0, 1.0, (n_rec, steps))
    p = VAL_BEFORE // STEP
    x[:, p:] = rng.normal(3.0, 0.5, (n_rec, steps - p))  # every event well above typical noise
    if loud_noise is not None:
        x[0, VAL_WARM // STEP + 19] = loud_noise  # one noise window end (1 s chunk end)
    return x


def test_clean_separation_scores_the_maximum() -> None:
    m = validation_metrics(_logits())
    assert m["auc"] == 1.0 and m["det_p0.5"] == 1.0 and m["det01_p0.5"] == 1.0
    assert np.isclose(m["score"], 1.0 + 0.25 + 0.5)


def test_one_loud_noise_window_costs_only_the_strict_part() -> None:
    """A single noise window above the events leaves the 1% numbers at 1 but zeroes detection at the
    0.1% threshold: the score separates the two models where the old score tied them."""
    clean, loud = validation_metrics(_logits()), validation_metrics(_logits(loud_noise=9.0))
    assert loud["det_p0.5"] == 1.0 and loud["det01_p0.5"] == 0.0 and loud["det01_p1.0"] == 0.0
    assert loud["score"] < clean["score"] - 0.4
