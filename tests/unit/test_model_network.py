"""The network's streaming contract in torch: chunked scoring equals one full forward; shapes; the
in-graph normalisation makes scores independent of gain and DC offset; dead components stay finite."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # torch forward passes: ~35 s of the unit layer

from models.augment import labels  # noqa: E402
from models.network import Ensemble, StreamingDetector, build_network  # noqa: E402


def _net(seed: int = 0, highpass: bool = False) -> StreamingDetector:
    torch.manual_seed(seed)
    return StreamingDetector(highpass=highpass).eval()


def _stream(b: int, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, n, generator=g) * 200.0 + 3000.0
    x[:, :, n // 2 :] += torch.randn(b, 3, n - n // 2, generator=g) * 5000.0  # an "onset"
    x[-1, 1:] = 0.0  # a single-component station
    if b > 1:
        x[0, 2, n // 4 : n // 4 + 137] = 0.0  # a component dead for a while (restarts its statistics)
    return x


@pytest.mark.parametrize("highpass", [False, True])
@pytest.mark.parametrize("chunk", [10, 100, 250])
def test_chunked_equals_full_sequence(chunk: int, highpass: bool) -> None:
    """Scoring a stream chunk by chunk (state carried) gives the same outputs as one call."""
    net = _net(highpass=highpass)
    x = _stream(3, 1500)
    with torch.no_grad():
        ev_full, p_full, st_full = net.forward_logits(x, net.initial_state(3))
        evs, ps, st = [], [], net.initial_state(3)
        for i in range(0, x.shape[2], chunk):
            e, p, st = net.forward_logits(x[:, :, i : i + chunk], st)
            evs.append(e)
            ps.append(p)
    assert torch.allclose(torch.cat(evs, 1), ev_full, atol=1e-4)
    assert torch.allclose(torch.cat(ps, 1), p_full, atol=1e-4)
    assert torch.allclose(st, st_full, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("highpass", [False, True])
def test_output_shapes_and_state_layout(highpass: bool) -> None:
    net = _net(highpass=highpass)
    ev, pp, st = net(torch.zeros(5, 3, 100), net.initial_state(5))
    assert ev.shape == (5,) and pp.shape == (5, 10) and st.shape == (5, net.state_size)
    lay = net.state_layout()
    assert lay["reserved"][1] == net.state_size and lay["reserved"][0] == net.state_used
    parts = sorted(v for k, v in lay.items() if k != "reserved")
    assert all(a[1] == b[0] for a, b in pairwise(parts)) and parts[0][0] == 0  # contiguous
    assert float(st[:, lay["n_steps"][0]].detach().max()) == 10.0  # step counter advanced by 10 steps
    assert torch.all(st[:, lay["reserved"][0] :] == 0)


@pytest.mark.parametrize("highpass", [False, True])
def test_gain_and_dc_invariance(highpass: bool) -> None:
    """Raw counts scaled by 1e3 with a large DC offset score (almost) like the original."""
    net = _net(highpass=highpass)
    x = _stream(2, 1200)
    with torch.no_grad():
        a, _, _ = net.forward_logits(x, net.initial_state(2))
        live = (x != 0).float()  # dead components and dead stretches stay zero
        b, _, _ = net.forward_logits((x * 1000.0 + 2.0e5) * live, net.initial_state(2))
    assert torch.allclose(a, b, atol=1e-4)


def test_stuck_component_normalises_to_nearly_zero() -> None:
    """A flat, non-zero component (stuck digitiser) does not turn float round-off into signal."""
    net = _net()
    x = torch.full((1, 3, 1000), 2.0e5)
    z, *_ = net.normalise(x, net.initial_state(1))
    assert float(z.abs().max()) < 0.5


def test_dead_components_and_silence_are_finite() -> None:
    """All-zero input (a dead station) and a flat gap never produce NaN."""
    net = _net()
    x = torch.zeros(2, 3, 600)
    x[1, 0, :300] = torch.randn(300) * 10
    x[1, 0, 300:] = x[1, 0, 299]  # hold-last gap
    with torch.no_grad():
        ev, pp, st = net(x, net.initial_state(2))
    assert torch.isfinite(ev).all() and torch.isfinite(pp).all() and torch.isfinite(st).all()


def test_labels_mark_event_from_p_and_gaussian_at_p() -> None:
    ev, pt = labels(300, 123.0)
    assert ev[:12].sum() == 0 and ev[12:].min() == 1  # step 12 covers samples 120..129 and ends after P
    assert int(np.argmax(pt)) == 12
    ev2, pt2 = labels(300, 1000.0)
    assert ev2.sum() == 0 and pt2.max() < 1e-6


@pytest.mark.parametrize("highpass", [False, True])
def test_component_coming_alive_is_normalised_like_a_new_station(highpass: bool) -> None:
    """A component that went dead (all zeros) and comes alive with a large DC offset is normalised
    from its first live step, exactly as if the station had just started: neither the dead stretch
    nor the noise before it may turn the switch-on into a huge step that looks like an earthquake."""
    net = _net(highpass=highpass)
    g = torch.Generator().manual_seed(5)
    before = torch.randn(1, 3, 1500, generator=g) * 3.0
    live = torch.randn(1, 3, 1000, generator=g) * 50.0 + 1e6
    dead_then_live = torch.cat([before, torch.zeros(1, 3, 500), live], dim=-1)
    with torch.no_grad():
        z_late, *_ = net.normalise(dead_then_live, net.initial_state(1))
        z_new, *_ = net.normalise(live, net.initial_state(1))
        old = StreamingDetector(component_start=False).eval()
        z_old, *_ = old.normalise(dead_then_live, old.initial_state(1))
    assert float((z_late[..., 2000:] - z_new).abs().max()) < 1e-2  # float32 EMA round-off at a 1e6 DC level
    assert float(z_new.abs().max()) < 6.0  # log-compressed, O(1) noise
    assert float(z_old[..., 2000:2010].abs().max()) > 8.0  # the old behaviour: a huge switch-on step


def test_ensemble_streams_like_its_members_and_averages_their_logits() -> None:
    """An ensemble's state is its members' states side by side: chunked scoring equals one call, and its
    logits are the mean of what each member gives on its own; a saved config rebuilds the same net."""
    members = [_net(seed=0), _net(seed=1, highpass=True)]
    ens = Ensemble(members).eval()
    assert ens.state_size == sum(m.state_size for m in members)
    x = _stream(3, 1200)
    with torch.no_grad():
        ev, pl, st = ens.forward_logits(x, ens.initial_state(3))
        own = [m.forward_logits(x, m.initial_state(3)) for m in members]
        st_c, evs = ens.initial_state(3), []
        for i in range(0, x.shape[2], 100):
            e, _, st_c = ens.forward_logits(x[:, :, i : i + 100], st_c)
            evs.append(e)
    assert torch.allclose(ev, (own[0][0] + own[1][0]) / 2, atol=1e-5)
    assert torch.allclose(pl, (own[0][1] + own[1][1]) / 2, atol=1e-5)
    assert torch.allclose(st[:, members[0].state_size :], own[1][2], atol=1e-4)
    assert torch.allclose(torch.cat(evs, 1), ev, atol=1e-4)
    lay = ens.state_layout()
    assert lay["m1.n_steps"] == [members[0].state_size, members[0].state_size + 1]
    rebuilt = build_network(ens.config())
    rebuilt.load_state_dict(ens.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval().forward_logits(x, rebuilt.initial_state(3))[0], ev)
