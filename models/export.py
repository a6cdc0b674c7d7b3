"""ONNX export of the trained network and its ``contract.json`` (thresholds from validation noise).

``eew model export [--model-dir models/eew_cnnlstm_v1] [--data-dir ../shared]`` reads ``weights.pt``,
writes ``model.onnx`` (weights embedded, dynamic batch and chunk axes, fixed state width) and
``contract.json``. Thresholds are chosen on the validation split's real noise, scored through ONNX
Runtime exactly like the live path: ``detection`` is the event_prob that 0.1% of 1 s noise windows reach,
``p_pick`` the p_prob that 0.1% of noise steps reach.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

from models.contract import DEFAULT_MODEL_DIR, ModelContract, TensorSpec, Thresholds, file_sha256

log = logging.getLogger(__name__)

MODEL_ID = "eew-cnnlstm"
MODEL_VERSION = "1.3.0"
ONNX_FILE = "model.onnx"
WARMUP_S = 5.0
TARGET_NOISE_FAR = 0.001  # per 1 s noise window (detection) and per 0.1 s noise step (p_pick)
TRAINING_KEYS = ("seed", "iterations", "train_seconds", "records", "best_val")


def load_network(model_dir: Path):
    """The torch network with the weights in ``model_dir/weights.pt`` (eval mode)."""
    import torch

    from models.network import build_network

    ckpt = torch.load(Path(model_dir) / "weights.pt", map_location="cpu", weights_only=False)
    net = build_network(ckpt["meta"]["config"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt["meta"]


def combine(members: list[Path], out_dir: Path) -> Path:
    """Write ``out_dir/weights.pt`` for the ensemble of the trained ``members`` (model folders), with
    each member's training summary; ``export`` then turns it into one ONNX graph and contract."""
    import torch

    from models.network import Ensemble

    nets, summaries = [], []
    for m in members:  # an ensemble given as a member contributes its own members
        net, meta = load_network(m)
        if isinstance(net, Ensemble):
            nets += list(net.members)
            summaries += meta["members"]
        else:
            nets.append(net)
            summaries.append({"dir": Path(m).name, **{k: meta.get(k) for k in TRAINING_KEYS}})
    ens = Ensemble(nets)
    meta = {"config": ens.config(), "members": summaries}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "weights.pt"
    torch.save({"state_dict": ens.state_dict(), "meta": meta}, path)
    return path


def export_onnx(net, path: Path, opset: int = 17) -> None:
    """Export with a batch of 2 and a 2-step chunk (both axes dynamic), weights in the one file."""
    import onnx
    import torch

    wave = torch.randn(2, 3, 2 * net.step) * 100.0
    state = net.initial_state(2)
    torch.onnx.export(
        net,
        (wave, state),
        str(path),
        dynamo=False,
        input_names=["wave", "state_in"],
        output_names=["event_prob", "p_prob", "state_out"],
        dynamic_axes={
            "wave": {0: "batch", 2: "chunk"},
            "state_in": {0: "batch"},
            "event_prob": {0: "batch"},
            "p_prob": {0: "batch", 1: "steps"},
            "state_out": {0: "batch"},
        },
        opset_version=opset,
        do_constant_folding=True,
    )
    model = onnx.load(str(path))
    for out in model.graph.output:  # the state width is fixed: say so in the graph
        if out.name == "state_out":
            dim = out.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = net.state_size
    model.producer_name = "eew-models-export"
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), save_as_external_data=False)
    data = Path(str(path) + ".data")
    if data.exists():
        data.unlink()


def _members_note(net) -> str:
    """What the contract's normalisation text adds for high-pass inputs and for ensembles."""
    hp = (
        "each component's first difference, divided by its own running mean absolute level before "
        "the step and compressed the same way, is fed beside the samples"
    )
    members = list(getattr(net, "members", []))
    if not members:
        return f" High-pass channels: {hp}." if net.highpass else ""
    which = [str(k) for k, m in enumerate(members) if m.highpass]
    return (
        f" Ensemble of {len(members)} networks, each normalising its input as above, with their event and "
        "P logits averaged; the state holds their states side by side"
        + (f"; member(s) {', '.join(which)} also take high-pass channels: {hp}." if which else ".")
    )


def base_contract(
    net, sha: str, thresholds: Thresholds, extra: dict, version: str = MODEL_VERSION
) -> ModelContract:
    return ModelContract(
        model_id=MODEL_ID,
        model_version=version,
        onnx_file=ONNX_FILE,
        sha256=sha,
        sampling_rate_hz=net.fs,
        component_order=["Z", "N", "E"],
        chunk_samples=100,
        step_samples=net.step,
        state_size=net.state_size,
        warmup_s=WARMUP_S,
        gap_fill="hold_last",
        normalisation=(
            "Inside the graph, per component and per 0.1 s step: subtract a bias-corrected exponential "
            f"running mean (time constant {net.tau_mean_s:g} s), divide by the bias-corrected running "
            f"mean absolute level of the demeaned signal before the current step (time constant "
            f"{net.tau_level_s:g} s; a new station starts from its first step), then sign(z)*log1p(|z|). "
            "Feed raw counts; a dead component is all zeros and stays zero. A dead step (all ten samples "
            "exactly zero) restarts that component's statistics, so a component that comes alive is "
            "normalised from its first live step like a new station's." + _members_note(net)
        ),
        inputs=[
            TensorSpec(name="wave", shape=["batch", 3, "chunk"]),
            TensorSpec(name="state_in", shape=["batch", net.state_size]),
        ],
        outputs=[
            TensorSpec(name="event_prob", shape=["batch"]),
            TensorSpec(name="p_prob", shape=["batch", "steps"]),
            TensorSpec(name="state_out", shape=["batch", net.state_size]),
        ],
        thresholds=thresholds,
        extra=extra,
    )


def choose_thresholds(model_dir: Path, data_dir: Path) -> tuple[Thresholds, dict]:
    """Thresholds from the validation split's real noise, scored through ONNX Runtime."""
    from models.data import default_datasets, load_dataset, screen_noise, select
    from models.evaluate import noise_windows_ours, prepare
    from models.runtime import StreamingModel

    records = [r for d in default_datasets(data_dir) for r in load_dataset(d)]
    val, _ = screen_noise(select(records, "val"))
    model = StreamingModel(model_dir, providers=["CPUExecutionProvider"], intra_op_threads=2)
    prep = prepare(val, pool=val, seed=4321)
    ev, pp = noise_windows_ours(model, prep)
    det = float(np.quantile(ev, 1.0 - TARGET_NOISE_FAR, method="higher"))
    pick = float(np.quantile(pp, 1.0 - TARGET_NOISE_FAR, method="higher"))
    note = (
        f"Chosen on the validation split ({len(val)} recordings) through ONNX Runtime: detection = the "
        f"event_prob exceeded by at most {TARGET_NOISE_FAR:.1%} of {len(ev)} real noise windows (1 s chunk "
        f"ends in each record's own pre-P noise, after 60 s of history: real noise from other recordings, "
        f"rescaled to the station); p_pick = the p_prob exceeded by at most {TARGET_NOISE_FAR:.1%} of {len(pp)} "
        "noise steps. Pre-P noise holding another earthquake is trimmed (models.data.screen_noise). With so few windows the detection threshold is close to the highest validation noise score."
    )
    return Thresholds(detection=round(det, 6), p_pick=round(pick, 6), note=note), {
        "val_noise_windows": int(len(ev)),
        "val_noise_steps": int(len(pp)),
    }


def export(
    model_dir: Path = DEFAULT_MODEL_DIR,
    data_dir: Path | None = None,
    version: str = MODEL_VERSION,
    retrigger: float | None = None,
) -> ModelContract:
    """weights.pt -> model.onnx + contract.json (thresholds from validation noise when data is given;
    ``retrigger``: the re-trigger level chosen on validation sequences, written beside them)."""
    net, meta = load_network(model_dir)
    onnx_path = Path(model_dir) / ONNX_FILE
    export_onnx(net, onnx_path)
    sha = file_sha256(onnx_path)
    extra = {
        "state_layout": net.state_layout(),
        "network": net.config(),
        "training": (
            {"members": meta["members"]} if "members" in meta else {k: meta.get(k) for k in TRAINING_KEYS}
        ),
    }
    # a provisional contract so the runtime can load the file while thresholds are measured
    provisional = Thresholds(detection=0.5, p_pick=0.5, note="provisional (no validation data given)")
    contract = base_contract(net, sha, provisional, extra, version)
    (Path(model_dir) / "contract.json").write_text(contract.model_dump_json(indent=2) + "\n")
    if data_dir is not None:
        thr, info = choose_thresholds(model_dir, data_dir)
        if retrigger is not None:
            thr = thr.model_copy(
                update={
                    "retrigger": retrigger,
                    "note": f"{thr.note} retrigger = {retrigger:g}: the p_prob a new P inside an episode "
                    "needs, chosen on the validation sequences' re-trigger sweep (eew model evaluate "
                    "--sequences --retrigger-sweep; models/MODEL_CARD.md).",
                }
            )
        extra = dict(extra, thresholds=info)
        contract = base_contract(net, sha, thr, extra, version)
        (Path(model_dir) / "contract.json").write_text(contract.model_dump_json(indent=2) + "\n")
    log.info("wrote %s (sha256 %s) and contract.json; thresholds %s", onnx_path, sha, contract.thresholds)
    return contract


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="eew model export", description=__doc__)
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("EEW_SHARED_DIR", "../shared")),
        help="shared folder for the validation noise that sets the thresholds",
    )
    ap.add_argument(
        "--member",
        type=Path,
        action="append",
        default=[],
        help="a trained model folder (repeatable): export the ensemble of the members into --model-dir",
    )
    ap.add_argument(
        "--no-thresholds", action="store_true", help="keep provisional thresholds (no data needed)"
    )
    ap.add_argument(
        "--retrigger",
        type=float,
        default=None,
        help="p_prob a new P inside an episode needs to re-trigger (chosen on validation sequences with "
        "eew model evaluate --retrigger-sweep); default: the P-pick threshold",
    )
    ap.add_argument(
        "--model-version",
        default=MODEL_VERSION,
        help=f"version written into the contract (default {MODEL_VERSION}, the shipped one; name a candidate otherwise)",
    )
    a = ap.parse_args(argv)
    if a.retrigger is not None and a.no_thresholds:
        ap.error("--retrigger is written beside thresholds chosen on validation data: drop --no-thresholds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.member:
        combine(a.member, a.model_dir)
    c = export(a.model_dir, None if a.no_thresholds else a.data_dir, a.model_version, a.retrigger)
    print(
        json.dumps(
            {
                "onnx": str(a.model_dir / c.onnx_file),
                "sha256": c.sha256,
                "thresholds": c.thresholds.model_dump(),
            }
        )
    )
    return 0
