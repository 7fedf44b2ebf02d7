"""The README's first Python example runs as written against a real server."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from agentstore.app import AgentStoreServer

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_readme_example_runs(server: AgentStoreServer) -> None:
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert example is not None
    code = example.group(1).replace("127.0.0.1:50051", f"127.0.0.1:{server.port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    version, ids, _token = stdout.decode().split(" ", 2)
    assert version == "2"
    assert ids.startswith("['")
