#!/usr/bin/env python3
"""Lint the contract with buf: `python tools/lint_protos.py`.

The contract imports google/rpc/status.proto, which buf cannot fetch here (it reaches no
registry). So the lint runs in a scratch workspace: proto/ as the module linted with
buf.yaml's rules, and beside it, as a second module that is not linted, the google/rpc files
that googleapis-common-protos installed. Exits with buf's code; tests/unit/test_codegen.py
runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from codegen import ROOT, googleapis_root

GOOGLEAPIS_MODULE = """\
  - path: googleapis
    lint:
      use: [MINIMAL]
      ignore: [googleapis]
"""


def buf_binary() -> str:
    found = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if found is None:
        raise SystemExit("buf is missing: install the dev extra (buf-bin)")
    return found


def lint() -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        shutil.copytree(ROOT / "proto", workspace / "proto")
        shutil.copytree(googleapis_root() / "google" / "rpc", workspace / "googleapis/google/rpc")
        # buf.yaml's rules for our module; the googleapis module is only there for imports.
        config = (
            (ROOT / "buf.yaml")
            .read_text()
            .replace(
                "modules:\n  - path: proto\n", "modules:\n  - path: proto\n" + GOOGLEAPIS_MODULE
            )
        )
        (workspace / "buf.yaml").write_text(config)
        return subprocess.run(
            [buf_binary(), "lint"],
            cwd=workspace,
            capture_output=True,
            text=True,
            check=False,
        )


def main() -> int:
    result = lint()
    print(result.stdout + result.stderr, end="")
    if result.returncode == 0:
        print("buf lint: the contract passes")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
