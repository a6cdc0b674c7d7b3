"""Earthquake sequences through the detector core with the shipped model (issue 13), on real records of
the held-out test split: a second event 3-120 s after the first (0.1-10x, also inside a large event's
coda) triggers the station again with a pick near its P; a single event's S and coda do not."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from models.contract import DEFAULT_MODEL_DIR
from models.data import Record, load_dataset, screen_noise, select
from models.evaluate import prepare
from models.runtime import StreamingModel
from models.sequences import live_end, make_sequence
from services.common.codec import Packet
from services.detector.core import CoreConfig, CoreDetector, Score

pytestmark = pytest.mark.slow  # real recordings through the ONNX model: ~16 s

FS = 100
T0 = 1_700_000_000 * 10**9
PICK_TOL_S = 0.5
#: Model versions known to miss these four second P's (model card, "Sequences" and "Candidate r4"): 1.2.0's
#: P head does not fire on a second P inside a coda; 1.3.0's fires on about half of the test sequences' second
#: P's (P head alone, 1 % FAR), but at its contract re-trigger level (0.90, the lowest at which single events
#: do not re-trigger on their own S or coda) the detector takes 0.21 of them by P2+1 s, none of these four.
BLIND_TO_SECOND_P = {"1.2.0", "1.3.0"}
SHIPPED_VERSION = json.loads((DEFAULT_MODEL_DIR / "contract.json").read_text())["model_version"]


@cache
def _test_split(shared: Path) -> tuple[list[Record], dict[str, tuple[np.ndarray, int]]]:
    recs = [r for d in ("nc_phasenet", "stead50") for r in load_dataset(shared / "data" / d)]
    chosen, _ = screen_noise(select(recs, "test"))
    return chosen, {p.rec.key: (p.hist, p.p_idx) for p in prepare(chosen, seed=2024)}


@pytest.fixture(scope="module")
def model() -> StreamingModel:
    return StreamingModel(DEFAULT_MODEL_DIR, providers=["CPUExecutionProvider"], intra_op_threads=1)


def run_core(model: StreamingModel, wave: np.ndarray) -> list[Score]:
    """The stream (3, N) Z, N, E at 100 Hz as 1 s packets through a CoreDetector scoring with the model."""
    c = model.contract
    cfg = CoreConfig(
        state_size=c.state_size,
        detection_threshold=c.thresholds.detection,
        p_pick_threshold=c.thresholds.p_pick,
        retrigger_threshold=c.thresholds.retrigger,
        warmup_s=c.warmup_s,
        chunk_samples=c.chunk_samples,
        step_samples=c.step_samples,
    )
    det = CoreDetector(cfg, model.step)
    out: list[Score] = []
    for s in range(0, wave.shape[1] - FS + 1, FS):
        for row, comp in enumerate("ZNE"):
            seg = wave[row, s : s + FS].astype(np.float32)
            det.feed(Packet("XX", "SEQ", "00", "HH" + comp, T0 + s * 10**7, 100.0, seg, 0))
        out += det.score_ready()
    return out + det.score_ready()


def _sample(t_ns: int) -> float:
    return (t_ns - T0) / 1e7


def new_triggers(scores: list[Score]) -> list[tuple[float, float]]:
    """(decision sample, pick sample) of every new trigger."""
    return [(_sample(s.window_end_ns), _sample(s.p_onset_ns)) for s in scores if s.new_trigger]


# (first record, second record, seconds after the first P, amplitude ratio): held-out test records
SEQUENCES = [
    ("stead50/109C.TA_20070610114701_EV", "nc_phasenet/NC_PHP_1990082517392512.npz", 8.0, 0.5),  # coda
    ("stead50/109C.TA_20070801032036_EV", "nc_phasenet/BK_SAO_2016111609193067.npz", 20.0, 2.0),
    ("nc_phasenet/NC_MMS_2009122402065714.npz", "stead50/109C.TA_20061129121745_EV", 45.0, 1.0),
    ("nc_phasenet/PG_BP_2008110314434009.npz", "nc_phasenet/NC_KCPB_2003093001160889.npz", 100.0, 0.3),
]


@pytest.mark.xfail(
    SHIPPED_VERSION in BLIND_TO_SECOND_P,
    reason=f"model {SHIPPED_VERSION}: the detector does not re-trigger on these second P's (MODEL_CARD.md)",
    strict=True,
)
@pytest.mark.parametrize(("first", "second", "dt_s", "ratio"), SEQUENCES)
def test_a_second_event_triggers_again_with_a_pick_near_its_p(
    shared: Path, model: StreamingModel, first: str, second: str, dt_s: float, ratio: float
) -> None:
    recs, prepared = _test_split(shared)
    by_key = {r.key: r for r in recs}
    hist, p1 = prepared[first]
    seq = make_sequence(np.random.default_rng(5), by_key[first], hist, p1, by_key[second], dt_s, ratio, recs)
    trig = new_triggers(run_core(model, seq.wave))
    near_p1 = [t for t in trig if abs(t[1] - seq.p1) <= PICK_TOL_S * FS]
    near_p2 = [t for t in trig if abs(t[1] - seq.p2) <= PICK_TOL_S * FS and t[0] <= seq.p2 + 2 * FS]
    assert near_p1, (trig, seq.p1)
    assert near_p2, (trig, seq.p2)
    after = [t for t in trig if t[0] > seq.p1 - 0.5 * FS]
    others = [t for t in after[1:] if t not in near_p2]  # the first after P1 is the first event's
    assert not others, others


def test_single_events_do_not_trigger_again_on_their_s_or_coda(shared: Path, model: StreamingModel) -> None:
    """Every 3-component event of the test split: one new trigger from P on (its pick may miss a weak
    P: that is the first-event pick's business), none after it on the S or the coda."""
    recs, prepared = _test_split(shared)
    again = {}
    n = 0
    for rec in recs:
        if not rec.three_component:
            continue
        hist, p = prepared[rec.key]
        end = p - rec.p + live_end(rec)  # the record's flat tail (its padding) is no data: a step into it
        trig = new_triggers(run_core(model, hist[:, :end]))
        after = [t for t in trig if t[0] > p - 0.5 * FS]
        n += 1
        if len(after) > 1:
            again[rec.key] = after
    assert n >= 15
    assert not again, again
