"""The committed protobuf code is exactly what the pinned generator makes from proto/."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) regenerates the code")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "proto"), f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", str(REPO / "proto/eew/v1/messages.proto")],
        check=True,
    )
    for name in ("messages_pb2.py", "messages_pb2.pyi"):
        fresh = (tmp_path / "eew/v1" / name).read_text()
        committed = (REPO / "services/common/pb/eew/v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make proto`"
