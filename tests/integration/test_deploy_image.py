"""The Dockerfile, checked as far as a machine without a Docker daemon allows.

Instead of only parsing the Dockerfile, the test rebuilds what its builder stage would: it copies
the build context through .dockerignore, applies the Dockerfile's COPY lines, builds the wheel
(`pip wheel`, no network) and installs it into a scratch folder, then runs the builder's own
checks from outside the repository against that install: the packaged model loads and matches its
contract, and `eew --help` works. What it cannot check: base-image pulls, dependency wheels for
the image's platform, and the runtime stage as a container (see deploy/README.md).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from services.cli import COMMANDS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
MODEL_DIR = "models/eew_cnnlstm_v1"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, its instructions)]."""
    result: list[tuple[str, list[tuple[str, str]]]] = []
    for ins, args in instructions():
        if ins == "FROM":
            m = re.search(r"\bAS\s+(\S+)", args, re.I)
            result.append((m.group(1) if m else "", []))
        elif result:
            result[-1][1].append((ins, args))
    return result


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, Go filepath.Match semantics plus '**'."""
    pats = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        pats.append((neg, re.compile(rx + "$")))
    return pats


def ignored(rel: str, pats: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the context excludes rel (a file or any of its parent folders matches; last match wins)."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for neg, rx in pats:
        if any(rx.match(c) for c in candidates):
            result = not neg
    return result


def build_context(dest: Path) -> Path:
    """Copy the repository as `docker build .` would send it (git-tracked or not, minus .dockerignore)."""
    pats = dockerignore_patterns()
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = [d for d in dirs if not ignored(rel_root + d, pats)]
        for f in files:
            rel = rel_root + f
            if not ignored(rel, pats):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(root) / f, target)
    return dest


def builder_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of the builder stage's COPY lines that read the build context."""
    name, body = stages()[0]
    out = []
    for ins, args in body:
        if ins == "COPY" and "--from" not in args:
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            out.append((words[:-1], words[-1]))
    return out


def test_dockerfile_structure() -> None:
    """Multi-stage: a builder and a slim Python 3.11 runtime that copies the builder's venv, runs as
    a non-root user, probes /healthz with a timeout, and enters through the `eew` console script."""
    st = stages()
    assert len(st) >= 2 and st[0][0] and st[-1][0], "named builder and runtime stages"
    arg_lines = " ".join(a for ins, a in instructions() if ins == "ARG")
    assert "python:3.11-slim" in arg_lines, "slim Python 3.11 base"
    runtime = st[-1][1]
    assert any(ins == "COPY" and f"--from={st[0][0]}" in a for ins, a in runtime), (
        "runtime copies the builder's venv"
    )
    users = [a for ins, a in runtime if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    hc = [a for ins, a in runtime if ins == "HEALTHCHECK"]
    assert len(hc) == 1 and "/healthz" in hc[0] and "timeout=" in hc[0] and "curl" not in hc[0]
    entry = [a for ins, a in runtime if ins == "ENTRYPOINT"]
    assert entry == ['["eew"]']
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("eew") == "services.cli:main"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    """Every COPY source exists and survives .dockerignore; bulky or private folders do not enter the context."""
    pats = dockerignore_patterns()
    copies = builder_copies()
    assert copies
    for sources, _ in copies:
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: missing in the repository"
            assert not ignored(src, pats), f"COPY {src}: excluded by .dockerignore"
    for private in (".venv", ".git", "tests", ".eew-run", "services/__pycache__"):
        assert ignored(private, pats), private


def test_image_build_stage_reproduced(tmp_path: Path) -> None:
    """Context -> COPY -> wheel -> install -> the builder's checks, all from outside the repository."""
    context = build_context(tmp_path / "context")
    src = tmp_path / "src"
    src.mkdir()
    for sources, dest in builder_copies():
        for s in sources:
            assert (context / s).exists(), f"COPY {s}: not in the build context, `docker build` would fail"
            # COPY semantics: into a folder (dest ends with / or is .) keep the name, else rename to dest.
            target = src / dest / Path(s).name if dest.endswith("/") or dest == "." else src / dest
            if (context / s).is_dir():
                shutil.copytree(context / s, target)
            else:
                shutil.copy2(context / s, target)
    wheels = tmp_path / "wheels"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=src, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = wheels.glob("eew-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    for command, (module, _) in COMMANDS.items():
        path = module.replace(".", "/") + ".py"
        assert path in names, f"`eew {command}` needs {path}, which the image would not contain"
    assert any(n.startswith("services/demo/data/") for n in names), "demo archive packaged"
    model_files = {n for n in names if n.startswith(MODEL_DIR + "/")}
    assert f"{MODEL_DIR}/contract.json" in model_files, (
        f"{MODEL_DIR} (the trained model) is not in the package: the image would ship without it"
    )
    assert any(n.endswith(".onnx") for n in model_files)

    site = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = (
        "import models, services;"
        f"assert models.__file__.startswith({str(site)!r}), models.__file__;"
        "from models.runtime import StreamingModel;"
        "m = StreamingModel(providers=['CPUExecutionProvider']);"
        "print('model ok', m.contract.model_id if hasattr(m.contract, 'model_id') else '')"
    )
    res = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "services.cli", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "detect" in res.stdout, res.stdout + res.stderr


def test_image_installs_the_extra_it_is_built_with() -> None:
    """`ARG EXTRAS` picks the pyproject extra installed beside the core: its default (every service)
    is an extra, and `--build-arg EXTRAS=` installs the core alone (the lean detector image)."""
    body = dict(stages())[stages()[0][0]]
    defaults = [a.split("=", 1)[1] for ins, a in body if ins == "ARG" and a.startswith("EXTRAS=")]
    assert defaults, "builder stage declares ARG EXTRAS=<default>"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert defaults[0] in extras, defaults
    (install,) = [a for ins, a in body if ins == "RUN" and "pip install" in a and "EXTRAS" in a]
    for value, want in (("", "."), (defaults[0], f".[{defaults[0]}]"), ("alerting", ".[alerting]")):
        target = shlex.split(install)[-1]
        got = subprocess.run(
            ["sh", "-c", f'printf %s "{target}"'], env={"EXTRAS": value}, capture_output=True, text=True
        ).stdout
        assert got == want, (value, got)
