"""agentstore: durable, searchable, live-streamable memory for AI-agent sessions, over gRPC."""

from pathlib import Path

# The contract stubs (`agentstore.v1`) are generated into generated/agentstore/v1. In a wheel
# they are merged into this package (see pyproject.toml); in a source checkout this line lets
# `import agentstore.v1` find them beside src/.
_generated = Path(__file__).resolve().parent.parent.parent / "generated" / "agentstore"
if (_generated / "v1").is_dir():
    __path__.append(str(_generated))

__version__ = "0.1.0"
