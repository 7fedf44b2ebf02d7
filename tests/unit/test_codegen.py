"""The committed stubs are exactly what the protos generate, and the protos pass buf lint."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import codegen  # noqa: E402
import lint_protos  # noqa: E402


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    codegen.generate(tmp_path)
    fresh = codegen.generated_files(tmp_path)
    committed = codegen.generated_files(ROOT / "generated")
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"run `python tools/codegen.py`; stale: {stale}"


def test_protos_pass_buf_lint() -> None:
    result = lint_protos.lint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_agentstore_v1_gives_the_stubs() -> None:
    import agentstore.v1

    assert agentstore.v1.session_service_pb2_grpc.SessionServiceStub
    assert agentstore.v1.session_pb2.Session.DESCRIPTOR.full_name == "agentstore.v1.Session"
