#!/usr/bin/env python3
"""The two commands of the quick start, for a machine that has only Python 3.11+:

    python3 tools/dev.py serve [agentstore serve flags]   # a running server
    python3 tools/dev.py test  [pytest arguments]         # lint, types, and the test suite

Both create `.venv` beside this repository and install the project (server and client) into it
when it is missing or a build file changed, so either can be the first command run in a fresh
clone.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".agentstore-installed"
CLIENT = ROOT / "clients" / "python"
BUILD_FILES = [root / name for root in (ROOT, CLIENT) for name in ("pyproject.toml", "setup.py")]
LINTED = ["src", "tests", "tools", "bench", "setup.py", "clients/python"]


def run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must say why on an old Python
        sys.exit(f"agentstore needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    build_files = b"".join(path.read_bytes() for path in BUILD_FILES)
    wanted = hashlib.sha256(build_files).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # Both distributions, editable: the server depends on the client, found here, not on PyPI.
    run(
        BIN / "python", "-m", "pip", "install", "--quiet",
        "--editable", CLIENT, "--editable", ".[dev]",
    )  # fmt: skip
    STAMP.write_text(wanted)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"serve", "test"}:
        sys.exit(__doc__)
    ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "serve":
        os.execv(BIN / "agentstore", [str(BIN / "agentstore"), "serve", *rest])
    run(BIN / "ruff", "check", *LINTED)
    run(BIN / "ruff", "format", "--check", *LINTED)
    run(BIN / "mypy")
    run(BIN / "python", "-m", "pytest", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
