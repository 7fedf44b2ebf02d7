"""Regenerate the Python code for the contract: `python tools/codegen.py`.

Writes `generated/agentstore/v1/` from `proto/agentstore/v1/*.proto` (messages, `.pyi` stubs and
gRPC stubs) plus an `__init__.py` that imports them, so `import agentstore.v1` gives the stubs.
`tests/unit/test_codegen.py` regenerates into a temporary folder and fails if the committed
output differs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("agentstore") / "v1"

INIT_HEADER = (
    '"""Generated stubs of the agentstore.v1 contract.'
    ' Do not edit: run `python tools/codegen.py`."""\n\n'
)


def googleapis_root() -> Path:
    """Where googleapis-common-protos (a dependency) installed google/rpc/*.proto: the
    contract imports google/rpc/status.proto from there, as its generated code imports
    google.rpc.status_pb2."""
    import google.rpc

    return Path(next(iter(google.rpc.__path__))).parent.parent


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))


def generate(out_root: Path) -> None:
    """Generate into `out_root/agentstore/v1/`, replacing what is there."""
    target = out_root / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*_pb2*.py*"):
        stale.unlink()
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"-I{googleapis_root()}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(path.relative_to(PROTO_ROOT)) for path in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: see the messages above")
    modules = sorted(path.stem for path in target.glob("*_pb2*.py"))
    imports = "".join(f"from agentstore.v1 import {name} as {name}\n" for name in modules)
    (target / "__init__.py").write_text(INIT_HEADER + imports)


def generated_files(root: Path) -> dict[str, str]:
    """The generated files under `root` by relative path, for comparing two outputs."""
    base = root / PACKAGE
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(base.iterdir())
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }


def main() -> int:
    out_root = ROOT / "generated"
    generate(out_root)
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        if generated_files(Path(scratch)) != generated_files(out_root):
            print("codegen is not reproducible", file=sys.stderr)
            return 1
    print(f"generated {len(generated_files(out_root))} files in {out_root / PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
