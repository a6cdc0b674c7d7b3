"""The detector's batched displacement filter equals the alerting's reference filter, chunk by chunk."""

import numpy as np

from services.common.displacement import DisplacementBank, DisplacementFilter, integrations_for


def test_batched_chunks_match_reference_filter_per_station() -> None:
    rng = np.random.default_rng(3)
    fs, chunk, n = 100.0, 100, 30
    streams = rng.standard_normal((4, chunk * n)).cumsum(axis=1) + rng.uniform(-1e4, 1e4, (4, 1))
    integ = np.array([1, 2, 1, 2])
    bank = DisplacementBank(fs, capacity=2)
    bank.ensure(8)
    slots = np.array([5, 0, 7, 3])
    refs = [DisplacementFilter(fs, integrations=int(k)) for k in integ]
    for i in range(n):
        seg = streams[:, i * chunk : (i + 1) * chunk]
        got = bank.peak(slots, seg, integ)
        want = [np.abs(f.process(seg[j])).max() for j, f in enumerate(refs)]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_reset_restarts_from_steady_state() -> None:
    bank = DisplacementBank(100.0, capacity=1)
    dc = np.full((1, 100), 5000.0)
    bank.peak(np.array([0]), dc, np.array([1]))
    bank.reset(0)
    assert bank.peak(np.array([0]), dc, np.array([1]))[0] < 1e-9  # no ringing from the offset


def test_accelerometers_are_integrated_twice() -> None:
    assert integrations_for("HN") == 2 and integrations_for("HH") == 1 and integrations_for("EH") == 1
