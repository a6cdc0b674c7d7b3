"""Earthquakes in sequences (issue 13, item 4): two semi-synthetic earthquakes close in time,
through the real detector (shipped model) and the alerting core, must give one event id per
earthquake, every station's pick in the right event, and each event located within the scenario
tolerances of ``test_alerting_scenarios`` (epicentre <= 10 km, |origin time| <= 1 s inside the
network).

How a sequence is built (``build_sequence``)
    Each earthquake is built exactly as a single scenario (``build_scenario``: held-out real
    nc_phasenet records moved to IASP91 P times and scaled to Wu & Zhao's Pd for its magnitude),
    the second one with other records at each station. Each station's trace is the sum of its two
    records (1 s cosine tapers at their ends), so the second P arrives in the first one's coda or
    noise as in a real sequence. Cases: the second earthquake 5, 20 and 60 s after the first, in
    the same place (an aftershock) or 50 km away (its P waves cross the first one's at some
    stations). Magnitudes: M5.0 then M4.6 (same place) or M4.8 then M4.8 (50 km away); at most
    stations that puts the second P 0.2-3x the first one's amplitude at that time.

What runs
    ``detector_scores`` (the real detector core and model, 1 s steps) and ``oracle_scores``
    (exact P picks: a re-trigger at the second P) into the Associator with the IASP91 locator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from services.alerting.association.associator import (
    NS,
    AlertRecord,
    AssociationConfig,
    Associator,
    ScoreRecord,
)
from services.alerting.association.locate import LocatorConfig
from services.common.displacement import DisplacementFilter
from services.common.domain import haversine_km
from services.common.inventory import StationInventory
from tests.integration.test_alerting_scenarios import (
    FS,
    GAIN,
    Built,
    Spec,
    build_scenario,
    detector_scores,
)

pytestmark = pytest.mark.integration

P_TOLERANCE_S = 1.5  # a station's pick belongs to the event whose true P is this close


@dataclass(frozen=True)
class SeqSpec:
    name: str
    first: Spec
    second: Spec
    delay_s: float  # second origin - first origin


def _specs() -> list[SeqSpec]:
    out = []
    for dt in (5.0, 20.0, 60.0):
        a = Spec("main M5.0", 4.0, -3.0, 8.0, 5.0, 1)
        out.append(SeqSpec(f"same place +{dt:g}s", a, replace(a, name="after M4.6", magnitude=4.6, seed=5), dt))
        a2 = Spec("first M4.8", -22.0, 5.0, 8.0, 4.8, 2)
        b2 = Spec("second M4.8", 28.0, 5.0, 10.0, 4.8, 7)  # 50 km east
        out.append(SeqSpec(f"50 km away +{dt:g}s", a2, b2, dt))
    return out


SEQUENCES = _specs()


@dataclass
class Sequence:
    spec: SeqSpec
    events: tuple[Built, Built]
    combined: Built  # summed traces; p_true_ns of the first event (see ``p_true``)
    p_true: tuple[dict[str, int], dict[str, int]]


def _taper(n: int, k: int = FS) -> np.ndarray:
    w = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, k))
    w[:k], w[-k:] = ramp, ramp[::-1]
    return w


def build_sequence(shared: Path, spec: SeqSpec, taup: object) -> Sequence:
    a = build_scenario(shared, spec.first, taup)
    b = build_scenario(shared, spec.second, taup)
    shift = a.origin_ns + int(spec.delay_s * NS) - b.origin_ns
    step = NS // FS
    zne, disp, starts, p2 = {}, {}, {}, {}
    for st in a.stations:
        sid = st.id
        sa, sb = a.start_ns[sid], b.start_ns[sid] + shift
        p2[sid] = b.p_true_ns[sid] + shift
        t0 = min(sa, sb)
        n = (max(sa + a.zne[sid].shape[1] * step, sb + b.zne[sid].shape[1] * step) - t0) // step
        tr = np.zeros((3, n))
        for src, s0 in ((a.zne[sid], sa), (b.zne[sid], sb)):
            i0 = (s0 - t0) // step
            tr[:, i0 : i0 + src.shape[1]] += src * _taper(src.shape[1])
        zne[sid], starts[sid] = tr, t0
        disp[sid] = DisplacementFilter(FS).process(tr[0])
    comb = Built(spec.first, a.origin_ns, a.lat, a.lon, a.stations, dict(a.p_true_ns), starts, zne, disp)
    b2 = replace(b, origin_ns=b.origin_ns + shift, p_true_ns=p2)
    return Sequence(spec, (a, b2), comb, (a.p_true_ns, p2))


def oracle_sequence_scores(s: Sequence) -> list[ScoreRecord]:
    """Exact picks: triggered from each true P for 20 s; the second P is a new trigger even when
    the first trigger is still on (its score carries the new pick)."""
    c = s.combined
    out = []
    for st in c.stations:
        sid = st.id
        ps = sorted(p[sid] for p in s.p_true)
        t0, n = c.start_ns[sid], c.zne[sid].shape[1] // FS
        for k in range(1, n):
            end = (t0 // NS + k) * NS
            start = end - NS
            on = any(0 < end - p <= 20 * NS for p in ps)
            new = [p for p in ps if start <= p < end]
            d = c.disp[sid][max(0, (start - t0) // (NS // FS)) : max(0, (end - t0) // (NS // FS))]
            out.append(
                ScoreRecord(
                    "SX", st.station, "", "HH", start, end, 0.99 if on else 0.01, on,
                    p_onset_ns=new[-1] if new else None,
                    p_onset_probability=0.9 if new else 0.0,
                    ingest_time_ns=end,
                    peak_displacement=float(np.abs(d).max()) if len(d) else 0.0,
                    new_trigger=bool(new),
                )
            )  # fmt: skip
    out.sort(key=lambda r: (r.window_end_ns, r.stream))
    return out


def associate(s: Sequence, scores: list[ScoreRecord]) -> tuple[list[AlertRecord], Associator]:
    c = s.combined
    assoc = Associator(
        AssociationConfig(), StationInventory(c.stations), locator=LocatorConfig(), gains={st.id: GAIN for st in c.stations}
    )
    return assoc.add_many(scores) + assoc.flush(), assoc


@dataclass
class Outcome:
    name: str
    picks: str
    n_events: int
    matched: list[int | None]  # index of the earthquake each event is (None: neither)
    wrong_picks: int  # station picks in an event that are not that earthquake's P
    loc_err_km: list[float | None]  # per earthquake: last alert of its event
    ot_err_s: list[float | None]
    n_stations: list[int]


def judge(s: Sequence, alerts: list[AlertRecord], picks: str) -> Outcome:
    last: dict[str, AlertRecord] = {}
    for a in alerts:
        last[a.event_id] = a
    matched: list[int | None] = []
    wrong = 0
    per_eq: dict[int, AlertRecord] = {}
    for ev in last.values():
        votes = [0, 0]
        for c in ev.stations:
            sid = f"{c.network}.{c.station}"
            errs = [abs(c.p_time_ns - p[sid]) / NS for p in s.p_true]
            k = int(np.argmin(errs))
            if errs[k] <= P_TOLERANCE_S:
                votes[k] += 1
        k = int(np.argmax(votes)) if max(votes) else None
        matched.append(k)
        if k is not None:
            per_eq.setdefault(k, ev)
            for c in ev.stations:
                sid = f"{c.network}.{c.station}"
                if abs(c.p_time_ns - s.p_true[k][sid]) / NS > P_TOLERANCE_S:
                    wrong += 1
    loc, ot, ns = [], [], []
    for k, b in enumerate(s.events):
        ev = per_eq.get(k)
        ns.append(0 if ev is None else len(ev.stations))
        if ev is None or ev.location is None:
            loc.append(None)
            ot.append(None)
            continue
        loc.append(haversine_km(b.lat, b.lon, ev.location.latitude, ev.location.longitude))
        ot.append((ev.location.origin_time_ns - b.origin_ns) / NS)
    return Outcome(s.spec.name, picks, len(last), matched, wrong, loc, ot, ns)


@pytest.fixture(scope="module")
def sequences(shared: Path) -> list[Sequence]:
    from obspy.taup import TauPyModel

    taup = TauPyModel("iasp91")
    return [build_sequence(shared, s, taup) for s in SEQUENCES]


@pytest.fixture(scope="module")
def model() -> object:
    from models.runtime import StreamingModel

    return StreamingModel(intra_op_threads=1)


def _row(o: Outcome) -> str:
    f = lambda x, nd: "-" if x is None else f"{x:.{nd}f}"  # noqa: E731
    return (
        f"{o.name:18} {o.picks:5} {o.n_events:>3} {str(o.matched):>12} {o.wrong_picks:>5} "
        f"{f(o.loc_err_km[0], 1):>6} {f(o.ot_err_s[0], 2):>6} {o.n_stations[0]:>3} "
        f"{f(o.loc_err_km[1], 1):>6} {f(o.ot_err_s[1], 2):>6} {o.n_stations[1]:>3}"
    )


def _check(o: Outcome) -> None:
    where = f"{o.name} ({o.picks})"
    assert o.n_events == 2 and sorted(x for x in o.matched if x is not None) == [0, 1], where
    assert o.wrong_picks == 0, where
    for k in (0, 1):
        assert o.loc_err_km[k] is not None and o.loc_err_km[k] <= 10.0, f"{where}: earthquake {k + 1}"
        assert o.ot_err_s[k] is not None and abs(o.ot_err_s[k]) <= 1.0, f"{where}: earthquake {k + 1}"


def test_sequences_exact_picks(sequences: list[Sequence]) -> None:
    """The association itself: with exact picks and a re-trigger at every second P, each sequence
    gives two events, each station's pick in its own earthquake, both located within tolerance."""
    outs = [judge(s, associate(s, oracle_sequence_scores(s))[0], "exact") for s in sequences]
    print("\n" + "\n".join(_row(o) for o in outs))
    for o in outs:
        _check(o)


@pytest.mark.xfail(
    reason="the shipped model re-triggers on too few second P's (1.2.0: its P head does not fire on a second P "
    "in a first event's coda; 1.3.0: 0.21 of the test sequences' second P's by P2+1 s at its re-trigger "
    "level), so not every sequence gives two events (issue 13 item 2)",
    strict=False,
)
def test_sequences_through_detector(sequences: list[Sequence], model: object) -> None:
    """The whole chain: the shipped model's scores (with its P-onset re-triggers) give two events
    per sequence, picks in the right events, both located within tolerance."""
    outs = []
    for s in sequences:
        alerts, assoc = associate(s, detector_scores(s.combined, model))
        outs.append(judge(s, alerts, "model"))
    print(
        f"\n{'sequence':18} {'picks':5} {'ev':>3} {'matched':>12} {'wrong':>5} "
        f"{'loc1':>6} {'ot1':>6} {'n1':>3} {'loc2':>6} {'ot2':>6} {'n2':>3}"
    )
    print("\n".join(_row(o) for o in outs))
    for o in outs:
        _check(o)
