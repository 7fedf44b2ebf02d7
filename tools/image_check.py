"""Build the Dockerfile's image without a Docker engine or a registry, run it, and check it.

    sudo .venv/bin/python tools/image_check.py [--rebuild-base] [--keep]

Needs root and Debian's `buildah` and `debootstrap` (apt-get install buildah debootstrap).
Where no image registry is reachable the public base image cannot be pulled, so this makes a
base of its own: a Debian bookworm root file system from debootstrap with Python 3.11 and pip
(made once, kept as localhost/agentstore-base:bookworm), given to the Dockerfile as
BASE_IMAGE; the Dockerfile is otherwise built as it is, with `buildah bud --isolation chroot`.
Then, in containers of the image sharing one volume for /data:

1. `agentstore keys create` makes a writer key (the image requires keys);
2. `agentstore serve` starts (the embedded PostgreSQL in /data), health is checked from
   outside and a session is made and an event appended with the SDK and that key;
3. the server is stopped (SIGTERM) and started again in a new container on the same volume:
   the session and its event are read back.

Chroot isolation shares the host's network, so the server is reached on 127.0.0.1:50051
(which must be free), and the image's HEALTHCHECK is run beside it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "localhost/agentstore-base:bookworm"
IMAGE = "localhost/agentstore:check"
APP = "image-check"
LOCAL_AUTHORITIES = Path("/usr/local/share/ca-certificates")


def run(*command: str, capture: bool = False) -> str:
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, check=True, text=True, capture_output=capture)
    return result.stdout if capture else ""


def image_exists(name: str) -> bool:
    inspect = ["buildah", "inspect", "--type", "image", name]
    return subprocess.run(inspect, capture_output=True, check=False).returncode == 0


def make_base() -> None:
    """A Debian root file system with Python 3.11 and pip, imported as an image. Debian's
    Python refuses `pip install` outside a venv (PEP 668) unless told: the image says so,
    as the public Python image needs no telling. It trusts what this host trusts."""
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs"
        run(
            "debootstrap", "--variant=minbase",
            "--include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,passwd",
            "bookworm", str(rootfs), "http://deb.debian.org/debian",
        )  # fmt: skip
        archive = Path(scratch) / "rootfs.tar"
        run("tar", "-C", str(rootfs), "-cf", str(archive), ".")
        container = run("buildah", "from", "scratch", capture=True).strip()
        try:
            run("buildah", "add", container, str(archive), "/")
            # The certificate authorities this host adds to Debian's (a network's proxy, say):
            # without them the build's pip could not reach the package index from here.
            extra = sorted(LOCAL_AUTHORITIES.glob("*.crt"))
            for authority in extra:
                run("buildah", "copy", container, str(authority), f"{LOCAL_AUTHORITIES}/")
            if extra:
                run("buildah", "run", "--isolation", "chroot", container, "--",
                    "update-ca-certificates")  # fmt: skip
            run(
                "buildah", "config",
                "--env", "PIP_BREAK_SYSTEM_PACKAGES=1",
                "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env", "LANG=C.UTF-8",
                "--cmd", "python3", container,
            )  # fmt: skip
            run("buildah", "commit", container, BASE)
        finally:
            run("buildah", "rm", container)


PORT = 50051  # the image's


def check_port_free() -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", PORT))
        except OSError:
            sys.exit(f"image_check: port {PORT}, the image's, is taken here; stop what uses it")


def health_check_command() -> list[str]:
    """The image's HEALTHCHECK command, as its engine would run it."""
    described = json.loads(run("buildah", "inspect", "--type", "image", IMAGE, capture=True))
    test = described["Docker"]["config"]["Healthcheck"]["Test"]
    return ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])


@contextlib.contextmanager
def container(volume: Path) -> Iterator[str]:
    name = run("buildah", "from", IMAGE, capture=True).strip()
    # `buildah run` mounts a fresh anonymous volume on a path the image declares a VOLUME,
    # over a --volume bound there; `docker run -v` binds it. Undeclared in this working
    # container only, so the bind below is what /data is, as under docker.
    run("buildah", "config", "--volume", "/data-", name)
    try:
        yield name
    finally:
        run("buildah", "rm", name)


def in_container(name: str, volume: Path, *command: str) -> list[str]:
    return [
        "buildah", "run", "--isolation", "chroot",
        "--volume", f"{volume}:/data", name, "--", *command,
    ]  # fmt: skip


async def serve(name: str, volume: Path) -> asyncio.subprocess.Process:
    """`agentstore serve` in the container, as the image's entrypoint runs it (with the
    image's settings: 0.0.0.0:50051, keys required); returns once it says it serves."""
    command = in_container(name, volume, "agentstore", "serve")
    print("+", " ".join(command), flush=True)
    process = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    started = time.monotonic()
    while line := await asyncio.wait_for(process.stderr.readline(), 180):
        print("  |", line.decode().rstrip(), flush=True)
        if b"agentstore serving on" in line:
            print(f"  serving after {time.monotonic() - started:.1f} s", flush=True)
            asyncio.get_running_loop().create_task(_echo(process))
            return process
    raise SystemExit("the server in the image stopped before serving")


async def _echo(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        print("  |", line.decode().rstrip(), flush=True)


def _children(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent(entry) == pid
    ]


def _parent(entry: Path) -> int:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def server_pid(runner: int) -> int:
    """The server's pid under `buildah run` (chroot isolation shares the host's process
    table): buildah kills its command on SIGTERM rather than pass the signal on, so the
    server is told to stop directly, as a container engine would tell it."""
    pending = [runner]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if Path(argv[0].decode()).name.startswith("python"):
                return pid
        pending += _children(pid)
    raise SystemExit("the server's process was not found")


async def stop(process: asyncio.subprocess.Process) -> int:
    os.kill(server_pid(process.pid), signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), 60)
    print(f"  exit code {code}", flush=True)
    return code


async def check_from_outside(key: str, session_id: str | None) -> str:
    """Health SERVING; then either a new session with an event (returns its id), or the
    given session read back with its event."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agentstore.client import AsyncClient

    target = f"127.0.0.1:{PORT}"
    async with grpc.aio.insecure_channel(target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
    print(f"  health from outside: {status}", flush=True)
    if health.status != health_pb2.HealthCheckResponse.SERVING:
        raise SystemExit("the server in the image is not SERVING")
    async with AsyncClient(target, api_key=key) as client:
        if session_id is None:
            session = await client.create_session(APP)
            result = await client.append(session.id, {"type": "note", "content": {"text": "kept"}})
            print(f"  made session {session.id}, event seq {result.seqs[0]}", flush=True)
            return session.id
        session = await client.get_session(session_id)
        texts = [e.content.text async for e in client.list_events(session_id) if e.content]
        print(f"  read back session {session.id}: last_seq {session.last_seq}, {texts}")
        if texts != ["kept"]:
            raise SystemExit("the data did not survive the restart")
        return session.id


def run_health_check(name: str, volume: Path) -> None:
    """The image's own HEALTHCHECK, run in the container beside the server."""
    code = subprocess.run(in_container(name, volume, *health_check_command()), check=False)
    print(f"  the image's HEALTHCHECK exits {code.returncode}", flush=True)
    if code.returncode != 0:
        raise SystemExit("the image's HEALTHCHECK failed")


async def check(volume: Path) -> None:
    with container(volume) as name:
        output = run(
            *in_container(name, volume, "agentstore", "keys", "create", "--app", APP,
                          "--role", "writer", "--name", "image-check"),
            capture=True,
        )  # fmt: skip
    key = output.strip().splitlines()[-1]
    with container(volume) as name:
        server = await serve(name, volume)
        try:
            run_health_check(name, volume)
            session_id = await check_from_outside(key, None)
        finally:
            if await stop(server) != 0:
                raise SystemExit("the server did not stop cleanly")
    with container(volume) as name:
        server = await serve(name, volume)
        try:
            await check_from_outside(key, session_id)
        finally:
            await stop(server)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--rebuild-base", action="store_true", help="make the base again")
    options.add_argument("--keep", action="store_true", help="keep the volume afterwards")
    arguments = options.parse_args()
    if os.geteuid() != 0:
        sys.exit("image_check: run as root (buildah and debootstrap need it here)")
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            sys.exit(f"image_check: needs {tool}: apt-get install buildah debootstrap")
    check_port_free()
    if arguments.rebuild_base or not image_exists(BASE):
        make_base()
    started = time.monotonic()
    run(
        # Docker's format: OCI's drops HEALTHCHECK, which the check below runs.
        "buildah", "bud", "--isolation", "chroot", "--layers", "--format", "docker",
        "--build-arg", f"BASE_IMAGE={BASE}", "--tag", IMAGE, str(ROOT),
    )  # fmt: skip
    print(f"image built in {time.monotonic() - started:.0f} s", flush=True)
    volume = Path(tempfile.mkdtemp(prefix="agentstore-volume-"))
    # The image's user (uid 10001) owns /data, as a named volume would give it.
    os.chown(volume, 10001, 10001)
    try:
        asyncio.run(check(volume))
    finally:
        if not arguments.keep:
            shutil.rmtree(volume, ignore_errors=True)
    print("image check passed: built, served, answered from outside, data kept across a restart")


if __name__ == "__main__":
    main()
