"""``eew model train|export|evaluate|long-noise|openeew|bench``: the detector model's command line."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "train": ("models.train", "train the network on ../shared data (CPU, fixed seeds, early stopping)"),
    "export": (
        "models.export",
        "export weights.pt to model.onnx + contract.json (thresholds from val noise)",
    ),
    "evaluate": ("models.evaluate", "evaluate the model and peer ONNX models on the same real windows"),
    "long-noise": ("models.longnoise", "trigger rate over tens of minutes of continuous real noise"),
    "openeew": ("models.openeew", "detection and false triggers on the real openeew_mx MEMS network, as live"),
    "bench": ("bench.bench_inference", "ONNX Runtime throughput of the model and the peers"),
}


def usage() -> str:
    lines = ["usage: eew model <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {k:<10} {h}" for k, (_, h) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"eew model: unknown subcommand {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if argv[0] == "bench":
        return _bench(argv[1:])
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


def _bench(argv: list[str]) -> int:
    """bench/ is not an installed package: load bench/bench_inference.py from the checkout."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_inference.py"
    if not path.exists():
        print(f"eew model bench: {path} not found (run from a source checkout)", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("bench_inference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
