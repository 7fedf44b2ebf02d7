"""The README's Python examples run as written against a real server."""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from pathlib import Path

from agentstore.app import AgentStoreServer

README = Path(__file__).resolve().parents[2] / "README.md"


async def run_example(marker: str, server: AgentStoreServer) -> str:
    """The README's first whole program (a Python block ending in asyncio.run) that contains
    `marker`, pointed at the test server: its output."""
    examples = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (code,) = [c for c in examples if marker in c and "asyncio.run(main())" in c][:1]
    code = code.replace("127.0.0.1:50051", f"127.0.0.1:{server.port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_the_client_example_runs(server: AgentStoreServer) -> None:
    messages, state, *hits = (await run_example("AsyncClient(", server)).splitlines()
    assert messages == (
        "[{'role': 'user', 'content': 'Where is my invoice?'},"
        " {'role': 'assistant', 'content': 'Checking.'}]"
    )
    assert ast.literal_eval(state) == {"lang": "en", "topic": "billing"}
    assert hits[0].startswith("1 ")
    assert "<b>invoice</b>" in hits[0]


async def test_the_stubs_example_runs(server: AgentStoreServer) -> None:
    version, ids, _token = (await run_example("SessionServiceStub(channel)", server)).split(" ", 2)
    assert version == "2"
    assert ids.startswith("['")
