"""`eew model evaluate` variants: every stream the models score (event and noise windows, ours and the
peers') is the native stream through the detector's code (``models.augment.through_rate`` /
``as_acceleration``); the variant list parses as documented; the tables get a variant column only
when variants are asked for."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from models.augment import as_acceleration, through_rate
from models.data import Record
from models.evaluate import (
    CHUNK,
    DELTAS,
    FARS,
    NATIVE,
    PAD,
    Prepared,
    Scores,
    Variant,
    apply_variant,
    markdown,
    metrics,
    parse_variants,
    score_ours,
    score_peer,
)

N_REC = 1200  # record samples after the PAD of history: P at 300, P + 5 s fits


def _prepared(seed: int = 0, dead: int | None = None) -> list[Prepared]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(2):
        n = PAD + N_REC
        hist = rng.standard_normal((3, n)) * 50.0 + 1000.0
        p_idx = PAD + 300
        hist[:, p_idx:] += rng.standard_normal((3, n - p_idx)) * 2000.0
        if dead is not None:
            hist[dead] = 0.0
        rec = Record(f"t/{k}", hist[:, PAD:].astype(np.float32), 300, -1, (True, True, True))
        ends = np.arange(PAD + CHUNK, p_idx - 50 + 1, CHUNK)
        out.append(Prepared(rec, hist.astype(np.float32), p_idx, ends))
    return out


class _RecordingModel:
    """Stands in for models.runtime.StreamingModel: remembers every stream it is given."""

    def __init__(self) -> None:
        self.contract = SimpleNamespace(model_id="m", model_version="0", step_samples=10)
        self.seen: list[np.ndarray] = []

    def score_stream(self, wave: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        self.seen.append(np.array(wave[0]))
        n = wave.shape[2]
        ev = np.abs(wave[0, 0, chunk - 1 :: chunk]).astype(np.float64)
        return ev[None], np.linspace(0.0, 1.0, n // 10)[None]


class _RecordingPeer:
    """Stands in for models.evaluate.Peer: remembers every window it is given."""

    def __init__(self, window: int = 3001) -> None:
        self.spec = SimpleNamespace(window=window)
        self.name = "peer"
        self.seen: list[np.ndarray] = []

    def curves(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.seen.append(np.array(windows))
        s = np.abs(windows[:, 0]).astype(np.float64)
        return s, s


def test_variant_stream_is_through_rate_of_the_native_one() -> None:
    native = _prepared()
    for v in (Variant(31.25), Variant(20.0)):
        got = apply_variant(native, v)
        for pr, pv in zip(native, got, strict=True):
            want = through_rate(pr.hist.astype(np.float64), v.rate_hz).astype(np.float32)
            np.testing.assert_array_equal(pv.hist, want)
            assert pv.p_idx == pr.p_idx and np.array_equal(pv.noise_ends, pr.noise_ends)
    assert apply_variant(native, NATIVE) is native  # native untouched, bit for bit


def test_acceleration_at_a_rate_is_acceleration_first_then_the_rate() -> None:
    pr = _prepared()[0]
    got = Variant(31.25, True).apply(pr.hist)
    want = through_rate(as_acceleration(pr.hist.astype(np.float64)), 31.25).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_as_acceleration_of_a_sine_is_its_derivative() -> None:
    fs, f, amp = 100.0, 2.0, 300.0
    t = np.arange(2000) / fs
    x = np.vstack([amp * np.sin(2 * np.pi * f * t)] * 3)
    acc = Variant(None, True).apply(x)
    # the first difference x fs is the derivative half a sample earlier (within sinc(f/fs): 0.07%)
    want = amp * 2 * np.pi * f * np.cos(2 * np.pi * f * (t - 0.5 / fs))
    np.testing.assert_allclose(acc[:, 1:], np.vstack([want[1:]] * 3), rtol=0, atol=1e-3 * amp * 2 * np.pi * f)


def test_dead_component_stays_zero_in_every_variant() -> None:
    pr = _prepared(dead=2)[0]
    for v in parse_variants(["all"], [], False):
        y = v.apply(pr.hist)
        assert y.shape == pr.hist.shape and y.dtype == np.float32
        assert not np.any(y[2]) and np.all(np.isfinite(y)), v.name


def test_ours_and_peers_score_the_variant_streams_in_event_and_noise_windows() -> None:
    native = _prepared()
    v = Variant(40.0, True)
    pv = apply_variant(native, v)
    model, peer = _RecordingModel(), _RecordingPeer()
    score_ours(model, pv)
    score_peer(peer, pv)
    expected = [v.apply(pr.hist) for pr in native]
    # our model streams spans of the variant history from its first chunk offsets (event and noise streams)
    assert len(model.seen) >= 2 * len(native)
    for seen in model.seen:
        assert any(_is_span(seen, e) for e in expected)
    # the peer's noise and event windows are cuts of the variant history ending at the window ends
    noise_w, event_w = peer.seen
    w = peer.spec.window
    want_noise = [
        e[:, end - w : end] for e, pr in zip(expected, native, strict=True) for end in pr.noise_ends
    ]
    want_event = [
        e[:, end - w : end] for e, pr in zip(expected, native, strict=True) for end in pr.event_ends()
    ]
    np.testing.assert_array_equal(noise_w, np.stack(want_noise))
    np.testing.assert_array_equal(event_w, np.stack(want_event))


def _is_span(seen: np.ndarray, full: np.ndarray) -> bool:
    n = seen.shape[1]
    return any(np.array_equal(seen, full[:, off : off + n]) for off in range(CHUNK))


def test_parse_variants() -> None:
    names = [v.name for v in parse_variants(["all"], [], False)]
    assert names == [
        "native",
        "20 Hz",
        "31.25 Hz",
        "40 Hz",
        "50 Hz",
        "acceleration",
        "acceleration 31.25 Hz",
    ]
    assert parse_variants([], [], False) == [NATIVE]
    got = parse_variants([], ["20,31.25", "40"], True)
    assert [v.name for v in got] == [
        "native",
        "20 Hz",
        "31.25 Hz",
        "40 Hz",
        "acceleration",
        "acceleration 20 Hz",
        "acceleration 31.25 Hz",
        "acceleration 40 Hz",
    ]
    assert parse_variants(["native,acc@50, 50", "acc"], ["50"], False) == [
        NATIVE,
        Variant(50.0, True),
        Variant(50.0),
        Variant(None, True),
    ]
    for bad in ("15", "100", "fast", "acc@12"):
        with pytest.raises(ValueError):
            parse_variants([bad], [], False)


def _scores(name: str, shift: float) -> Scores:
    rng = np.random.default_rng(3)
    return Scores(
        name=name,
        noise=rng.uniform(0, 0.5, 400).tolist(),
        events=(rng.uniform(0.3, 1.0, (10, len(DELTAS))) + shift).tolist(),
        pick_err_s=rng.normal(0, 0.1, 10).tolist(),
    )


def _result(ms: list[dict], **extra: object) -> dict:
    return {
        "datasets": ["d"],
        "split": "val",
        "command": "eew model evaluate",
        "n_events": 10,
        "n_noise_windows": 400,
        "noise_hours": 400 / 3600,
        "noise_screened": False,
        "models": ms,
        **extra,
    }


def test_plain_tables_have_no_variant_column() -> None:
    md = markdown(_result([metrics(_scores("ours", 0.0), 0.9)]))
    assert "| model | noise FAR | P+0.5s |" in md and "variant" not in md.lower()


def test_variant_tables_have_rows_model_by_variant() -> None:
    ms = []
    for model in ("ours", "peer"):
        for name, shift in (("native", 0.0), ("40 Hz", -0.2)):
            m = metrics(_scores(model, shift), 0.9)
            m["variant"] = name
            ms.append(m)
    md = markdown(_result(ms, variants=["native", "40 Hz"], variant_seconds={"native": 1.0, "40 Hz": 2.0}))
    head = "| model | variant | " + " | ".join(f"{far:.1%}: P+{d:g}s" for far in FARS for d in (0.5, 1, 2))
    assert head in md
    rows = [ln for ln in md.splitlines() if ln.startswith(("| ours | ", "| peer | "))]
    summary = rows[:4]
    assert [r.split(" | ")[:2] for r in summary] == [
        ["| ours", "native"],
        ["| ours", "40 Hz"],
        ["| peer", "native"],
        ["| peer", "40 Hz"],
    ]
    p1 = ms[1]["early_detection"]["far_0.01"]["P+1s"] - ms[0]["early_detection"]["far_0.01"]["P+1s"]
    assert summary[1].endswith(f"| {100 * p1:+.1f} pt |") and summary[0].endswith("| — |")
    assert "| model | variant | noise FAR | P+0.5s |" in md


def test_band_snr_sees_a_p_only_in_its_own_band() -> None:
    """A 20 Hz burst after P in white noise: high SNR above 8 Hz, none within 1-8 Hz (what a 20 Hz
    recording keeps), so ``variant_losses`` can tell a P above a variant's band."""
    from models.evaluate import FS, band_snr

    rng = np.random.default_rng(3)
    x = rng.standard_normal(6000)
    p = 4000
    t = np.arange(100) / FS
    x[p : p + 100] += 20.0 * np.sin(2 * np.pi * 20.0 * t) * np.hanning(100)  # tapered: no broadband onset
    above, within = band_snr(x, p, 8.0, 40.0), band_snr(x, p, 1.0, 8.0)
    assert above > 10.0 and within < above / 4


def test_variant_losses_lists_events_detected_natively_but_not_at_the_rate() -> None:
    from models.evaluate import losses_markdown, variant_losses

    prepared = _prepared()
    i1 = DELTAS.index(1.0)
    noise = list(np.linspace(0.0, 0.5, 200))

    def sc(hit: list[bool]) -> Scores:
        ev = [[0.9 if h else 0.1] * len(DELTAS) for h in hit]
        assert all(len(e) > i1 for e in ev)
        return Scores(name="m", noise=noise, events=ev)

    runs = [(NATIVE, sc([True, True]), 0.5), (Variant(20.0), sc([True, False]), 0.5)]
    out = variant_losses(prepared, runs)
    assert list(out) == ["20 Hz"] and out["20 Hz"]["band_hz"] == [1.0, 8.0]
    assert [x["record"] for x in out["20 Hz"]["lost"]] == [prepared[1].rec.key]
    assert "20 Hz | 1-8 Hz |" in "\n".join(losses_markdown(out))
