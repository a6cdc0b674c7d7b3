"""The SHIPPED model: torch weights vs the ONNX file through ONNX Runtime (the live path) agree to < 1e-4
at batch 1 and 64 over several streamed chunks; the contract check accepts it and rejects tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import synthetic
from models.contract import DEFAULT_MODEL_DIR, load_contract
from models.exceptions import ContractError
from models.runtime import StreamingModel

pytestmark = pytest.mark.integration


def _streams(b: int, n: int, seed: int = 0) -> np.ndarray:
    """Realistic raw-count streams: events and noise at gains over orders of magnitude, DC offsets,
    single-component stations."""
    rng = np.random.default_rng(seed)
    out = np.empty((b, 3, n), dtype=np.float32)
    for i in range(b):
        level = 10.0 ** rng.uniform(0, 4)
        if i % 2:
            x = synthetic.event_record(
                rng, n, p_s=rng.uniform(2, n / 100 - 1), snr=rng.uniform(3, 100), noise_level=level
            )
        else:
            x = synthetic.noise(rng, n, level=level)
        x += rng.uniform(-1, 1, (3, 1)) * level * 20
        if i % 5 == 4:
            x[1:] = 0.0
        out[i] = x
    return out


@pytest.fixture(scope="module")
def shipped():
    torch = pytest.importorskip("torch")
    from models.export import load_network

    net, _ = load_network(DEFAULT_MODEL_DIR)
    return (
        torch,
        net,
        StreamingModel(DEFAULT_MODEL_DIR, providers=["CPUExecutionProvider"], intra_op_threads=2),
    )


@pytest.mark.parametrize("batch", [1, 64])
def test_torch_and_onnx_runtime_agree(shipped, batch: int) -> None:
    torch, net, model = shipped
    chunk = model.contract.chunk_samples
    x = _streams(batch, 8 * chunk, seed=batch)
    st_t = net.initial_state(batch)
    st_o = model.initial_state(batch)
    worst = 0.0
    for i in range(0, x.shape[2], chunk):
        with torch.no_grad():
            ev_t, pp_t, st_t = net(torch.from_numpy(x[:, :, i : i + chunk]), st_t)
        r = model.step(x[:, :, i : i + chunk], st_o)
        st_o = r.state
        assert r.event_prob.shape == (batch,) and r.p_prob.shape == (
            batch,
            chunk // model.contract.step_samples,
        )
        worst = max(
            worst,
            float(np.abs(r.event_prob - ev_t.numpy()).max()),
            float(np.abs(r.p_prob - pp_t.numpy()).max()),
        )
    assert worst < 1e-4, worst
    # the state carries raw-count statistics: compare each part relative to its magnitude
    st_t = st_t.numpy()
    for part, (a, b) in net.state_layout().items():
        scale = float(np.abs(st_t[:, a:b]).max()) if b > a else 0.0
        assert np.abs(st_o[:, a:b] - st_t[:, a:b]).max() <= 1e-5 * scale + 1e-4, part


def test_any_chunk_length_gives_the_same_scores(shipped) -> None:
    """Chunk is a dynamic axis: 0.1 s and 3 s chunks reproduce the 1 s chunk scores (same steps)."""
    _, _, model = shipped
    x = _streams(4, 1200, seed=7)
    _, p100 = model.score_stream(x, 100)
    _, p10 = model.score_stream(x, 10)
    _, p300 = model.score_stream(x, 300)
    assert np.abs(p10 - p100).max() < 1e-4 and np.abs(p300 - p100).max() < 1e-4


def test_contract_matches_and_weights_are_embedded() -> None:
    c = load_contract(DEFAULT_MODEL_DIR)
    assert (
        c.component_order == ["Z", "N", "E"]
        and c.sampling_rate_hz == 100
        and c.chunk_samples % c.step_samples == 0
    )
    assert not list(DEFAULT_MODEL_DIR.glob("*.onnx.data"))
    assert 0.0 < c.thresholds.detection < 1.0 and 0.0 < c.thresholds.p_pick < 1.0
    m = StreamingModel(DEFAULT_MODEL_DIR, providers=["CPUExecutionProvider"])
    assert m.provider == "CPUExecutionProvider"
    assert [i.shape for i in m.session.get_inputs()] == [["batch", 3, "chunk"], ["batch", c.state_size]]


def _tampered(tmp_path: Path, edit) -> Path:
    d = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, d, ignore=shutil.ignore_patterns("*.pt"))
    c = json.loads((d / "contract.json").read_text())
    edit(c, d)
    (d / "contract.json").write_text(json.dumps(c))
    return d


@pytest.mark.parametrize(
    "edit",
    [
        lambda c, d: c.update(sha256="0" * 64),
        lambda c, d: c["inputs"][0].update(name="x"),
        lambda c, d: c["inputs"][1].update(shape=["batch", 7]),
        lambda c, d: c["outputs"][0].update(dtype="float64"),
        lambda c, d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes() + b"\0"),
    ],
    ids=["sha", "input-name", "state-size", "dtype", "corrupted-onnx"],
)
def test_tampered_contract_or_model_is_rejected(tmp_path: Path, edit) -> None:
    with pytest.raises(ContractError):
        StreamingModel(_tampered(tmp_path, edit), providers=["CPUExecutionProvider"])


def test_exported_ensemble_runs_through_onnx_runtime_like_torch(shipped, tmp_path: Path) -> None:
    """``eew model export --member A --member B``: one ONNX graph whose state holds every member's state;
    through ONNX Runtime it scores like the torch ensemble (< 1e-4), and an ensemble of one model with
    itself (its members twice over) scores exactly like that model."""
    torch, _, single = shipped
    from models.export import combine, export, load_network

    combine([DEFAULT_MODEL_DIR, DEFAULT_MODEL_DIR], tmp_path / "ens")
    contract = export(tmp_path / "ens")
    net, _ = load_network(tmp_path / "ens")
    ens = StreamingModel(tmp_path / "ens", providers=["CPUExecutionProvider"])
    assert contract.state_size == ens.contract.state_size == 2 * single.contract.state_size
    assert len(net.members) == 2 * len(getattr(shipped[1], "members", [None]))
    x = _streams(6, 600, seed=3)
    ev_o, pp_o = ens.score_stream(x, 100)
    with torch.no_grad():
        _, pp_t, _ = net(torch.from_numpy(x), net.initial_state(6))
    assert np.abs(pp_o - pp_t.numpy()).max() < 1e-4
    ev_s, pp_s = single.score_stream(x, 100)
    assert np.abs(ev_o - ev_s).max() < 1e-5 and np.abs(pp_o - pp_s).max() < 1e-5
