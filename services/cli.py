"""The ``eew`` command: one entry point, a subcommand per service or tool."""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("services.broker.__main__", "start the embedded Kafka-compatible broker (Tansu)"),
    "ingest": ("services.ingest.__main__", "live SeedLink ingest -> Kafka"),
    "replay": ("services.ingest.replay_main", "replay miniSEED files or an SDS archive -> Kafka"),
    "detect": ("services.detector.__main__", "ONNX detector: waveforms -> station scores"),
    "alert": ("services.alerting.__main__", "association and alert delivery"),
    "demo": ("services.demo.__main__", "broker + all services on a replayed earthquake; prints the alert"),
    "model": ("models.__main__", "train, evaluate, export and benchmark the detector model"),
    "validate": ("services.validate.__main__", "replay an archive, score the alerts against a catalogue, write a report"),
    "dashboard": ("services.dashboard.__main__", "the operator's live web page: stations, events, alerts, health"),
}

# The pyproject extra each command needs beyond the core (the detector's runtime), so that a lean
# install names what is missing instead of failing on an import; tests/unit/test_packaging.py checks it.
EXTRAS: dict[str, str] = {
    "broker": "broker",
    "ingest": "ingest",
    "replay": "ingest",
    "detect": "",
    "alert": "alerting",
    "demo": "services",
    "model": "train",
    "validate": "services",
    "dashboard": "dashboard",
}


def usage() -> str:
    lines = ["usage: eew <command> [options]   (eew <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"eew: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] in ("services", "models", "bench"):
            raise
        extra = EXTRAS[name]
        print(
            f"eew {name}: module {exc.name!r} is not installed; "
            + (f"install the {extra!r} extra: pip install 'eew[{extra}]'" if extra else "reinstall: pip install eew"),
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
