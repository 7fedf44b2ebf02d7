"""The `agentstore` command.

Its client subcommands (`sessions`, `events`, `stats`, `tail`, `search`, `export`,
`import`) need only this
package; `serve`, `migrate` and `keys` come with the server distribution, which registers them
as "agentstore.commands" entry points. Tables for people; `--json` prints JSON lines, one object
per session, event or hit, with the proto's field names (see agentstore.client.plain)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, TextIO

from agentstore.client.async_client import DEFAULT_TARGET, PARTIAL_TYPES, AsyncClient
from agentstore.client.connection import TLS
from agentstore.client.errors import AgentstoreError
from agentstore.client.importers import read_adk_database, read_openai_agents_sqlite
from agentstore.client.plain import plain, time_text
from agentstore.client.transfer import (
    ScopedStateRecord,
    export_sessions,
    import_sessions,
    read_export,
    restore_scoped_states,
)
from agentstore.client.types import Event, SearchHit, Session

__all__ = ["main"]

SERVER_COMMANDS_GROUP = "agentstore.commands"
SERVER_COMMANDS = {
    "serve": "run the gRPC server",
    "migrate": "apply pending database migrations and exit",
    "keys": "make, list and revoke API keys",
}

# ANSI colours of event types in `tail`, when printing to a terminal.
_COLOURS = {"user": "32", "assistant": "36", "tool": "33", "error": "31", "system": "35"}


def _server_command(name: str) -> Callable[[Sequence[str]], int] | None:
    for entry in entry_points(group=SERVER_COMMANDS_GROUP):
        if entry.name == name:
            command: Callable[[Sequence[str]], int] = entry.load()
            return command
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentstore",
        description="Durable, searchable, live-streamable memory for AI-agent sessions.",
    )
    connection = parser.add_argument_group("connection")
    connection.add_argument(
        "--target",
        default=os.environ.get("AGENTSTORE_TARGET", DEFAULT_TARGET),
        help=f"server address(es), comma-separated [env AGENTSTORE_TARGET; {DEFAULT_TARGET}]",
    )
    connection.add_argument(
        "--api-key",
        default=os.environ.get("AGENTSTORE_API_KEY"),
        help="API key [env AGENTSTORE_API_KEY]",
    )
    connection.add_argument("--tls", action="store_true", help="connect with TLS")
    connection.add_argument(
        "--tls-ca", metavar="FILE", help="CA certificates that verify the server"
    )
    connection.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    connection.add_argument("--tls-key", metavar="FILE", help="client private key (mutual TLS)")
    connection.add_argument("--tls-server-name", metavar="NAME", help="name to verify")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of tables")

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, description in SERVER_COMMANDS.items():
        commands.add_parser(name, help=f"{description} (comes with the server)", add_help=False)

    sessions = commands.add_parser("sessions", help="list, get, delete and undelete sessions")
    session_commands = sessions.add_subparsers(dest="action", required=True)
    listing = session_commands.add_parser("list", help="sessions of an app, newest first")
    listing.add_argument("--app", required=True)
    listing.add_argument("--user", default="")
    listing.add_argument("--agent", default="")
    listing.add_argument("--status", choices=["active", "completed", "failed"])
    listing.add_argument("--deleted", action="store_true", help="include deleted sessions")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    for action, text in (("get", "one session, with its state"), ("undelete", "undelete one")):
        session_commands.add_parser(action, help=text).add_argument("session")
    deleting = session_commands.add_parser("delete", help="soft-delete (or --purge) one")
    deleting.add_argument("session")
    deleting.add_argument("--purge", action="store_true", help="erase it and its events")

    events = commands.add_parser("events", help="a session's events")
    events.add_argument("session")
    events.add_argument("--after", type=int, default=0, help="after this seq")
    events.add_argument("--type", action="append", default=[], help="only this type (repeat)")
    events.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")

    stats = commands.add_parser("stats", help="counts of the store, an app or one session")
    stats.add_argument("session", nargs="?", default="")
    stats.add_argument("--app", default="")

    tail = commands.add_parser("tail", help="events live as they commit (Ctrl-C to stop)")
    tail.add_argument("session", nargs="?", default="")
    tail.add_argument("--app", default="", help="every session of an app")
    tail.add_argument("--user", default="", help="with --app: one user's sessions")
    tail.add_argument("--type", action="append", default=[], help="only this type (repeat)")
    tail.add_argument("--replay", action="store_true", help="print the history first")

    export = commands.add_parser(
        "export", help="sessions and their events as JSON lines (docs/export-format.md)"
    )
    export.add_argument("--app", default="")
    export.add_argument("--user", default="")
    export.add_argument("--session", default="")
    export.add_argument("-o", "--output", default="-", help="file to write (default stdout)")

    importing = commands.add_parser(
        "import", help="bring in an export file: ids, seqs and times kept (admin key)"
    )
    importing.add_argument("file", help="an export file (- for stdin), or the other store's")
    importing.add_argument(
        "--from",
        dest="source",
        choices=["export", "openai-agents", "adk"],
        default="export",
        help="what FILE is: an agentstore export (default), an OpenAI Agents SQLiteSession"
        " database file, or the database URL of Google ADK's DatabaseSessionService",
    )
    importing.add_argument("--app", default="", help="the app of sessions from a store without")
    importing.add_argument("--user", default="", help="their user, likewise")

    search = commands.add_parser("search", help="ranked full-text search")
    search.add_argument("query")
    search.add_argument("--app", default="")
    search.add_argument("--user", default="")
    search.add_argument("--session", default="")
    search.add_argument("--type", action="append", default=[])
    search.add_argument("--limit", type=int, default=20, help="at most this many hits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SERVER_COMMANDS:
        command = _server_command(argv[0])
        if command is None:
            print(
                f"agentstore: `{argv[0]}` comes with the server: pip install agentstore",
                file=sys.stderr,
            )
            return 2
        return command(argv)
    arguments = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(arguments))
    except KeyboardInterrupt:
        return 130
    except AgentstoreError as exc:
        print(f"agentstore: {exc}", file=sys.stderr)
        for violation in getattr(exc, "violations", ()):
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of the output went away (`agentstore export | head`) and had what it
        # wanted: no message, the status a shell gives a command ended by SIGPIPE, and
        # nothing more written at exit (Python flushes stdout then, and would fail again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (OSError, ValueError) as exc:  # a file that cannot be read, or is not an export
        print(f"agentstore {arguments.command}: {exc}", file=sys.stderr)
        return 1


def _client(arguments: argparse.Namespace) -> AsyncClient:
    tls: TLS | None = None
    if arguments.tls or arguments.tls_ca or arguments.tls_cert:
        tls = TLS(
            ca_file=arguments.tls_ca,
            cert_file=arguments.tls_cert,
            key_file=arguments.tls_key,
            server_name=arguments.tls_server_name,
        )
    targets = [target.strip() for target in arguments.target.split(",") if target.strip()]
    return AsyncClient(targets, api_key=arguments.api_key, tls=tls)


async def _run(arguments: argparse.Namespace) -> int:
    out = Output(sys.stdout, as_json=arguments.json)
    async with _client(arguments) as client:
        if arguments.command == "sessions":
            await _sessions(client, arguments, out)
        elif arguments.command == "events":
            events = client.list_events(
                arguments.session, after_seq=arguments.after, types=arguments.type
            )
            async for event in _limited(events, arguments.limit):
                out.event(event)
        elif arguments.command == "stats":
            if arguments.session:
                out.record(await client.get_session_stats(arguments.session))
            else:
                out.record(await client.get_store_stats(arguments.app))
        elif arguments.command == "tail":
            await _tail(client, arguments, out)
        elif arguments.command == "export":
            await _export(client, arguments)
        elif arguments.command == "import":
            return await _import(client, arguments)
        elif arguments.command == "search":
            hits = client.search(
                arguments.query,
                app_name=arguments.app,
                user_id=arguments.user,
                session_id=arguments.session,
                types=arguments.type,
            )
            async for hit in _limited(hits, arguments.limit):
                out.hit(hit)
    return 0


async def _sessions(client: AsyncClient, arguments: argparse.Namespace, out: Output) -> None:
    if arguments.action == "list":
        sessions = client.list_sessions(
            arguments.app,
            user_id=arguments.user,
            agent_id=arguments.agent,
            status=arguments.status,
            show_deleted=arguments.deleted,
        )
        out.session_header()
        async for session in _limited(sessions, arguments.limit):
            out.session_row(session)
    elif arguments.action == "get":
        out.record(await client.get_session(arguments.session))
    elif arguments.action == "delete":
        deleted = await client.delete_session(arguments.session, purge=arguments.purge)
        if deleted is not None:
            out.record(deleted)
        else:
            out.note(f"purged {arguments.session}")
    elif arguments.action == "undelete":
        out.record(await client.undelete_session(arguments.session))


async def _tail(client: AsyncClient, arguments: argparse.Namespace, out: Output) -> None:
    if bool(arguments.session) == bool(arguments.app):
        raise SystemExit("agentstore tail: give a SESSION or --app APP")
    events = client.follow(
        session_id=arguments.session,
        app_name=arguments.app,
        user_id=arguments.user,
        types=arguments.type,
        skip_replay=not arguments.replay,
        give_up_after=None,
    )
    async for event in events:
        out.live_event(event, with_session=bool(arguments.app))


async def _export(client: AsyncClient, arguments: argparse.Namespace) -> None:
    if not (arguments.app or arguments.session):
        raise SystemExit("agentstore export: give --app APP (and --user U) or --session S")
    progress = ProgressLine(sys.stderr, "exported")
    if arguments.output == "-":
        summary = await export_sessions(
            client, sys.stdout, app_name=arguments.app, user_id=arguments.user,
            session_id=arguments.session, progress=progress,
        )  # fmt: skip
    else:
        # A command with one task: a local file's blocking I/O holds up nothing else.
        with open(arguments.output, "w", encoding="utf-8") as out:  # noqa: ASYNC230
            summary = await export_sessions(
                client, out, app_name=arguments.app, user_id=arguments.user,
                session_id=arguments.session, progress=progress,
            )  # fmt: skip
    progress.done(f"exported {summary.sessions} sessions, {summary.events} events")


async def _import(client: AsyncClient, arguments: argparse.Namespace) -> int:
    progress = ProgressLine(sys.stderr, "imported")
    problems: list[str] = []
    if arguments.source == "openai-agents":
        if not arguments.app:
            raise SystemExit("agentstore import --from openai-agents: give --app APP")
        sessions = read_openai_agents_sqlite(
            arguments.file, app_name=arguments.app, user_id=arguments.user, problems=problems
        )
        summary = await import_sessions(client, sessions, progress=progress)
    elif arguments.source == "adk":
        scoped: list[ScopedStateRecord] = []
        adk_sessions = read_adk_database(arguments.file, problems=problems, scoped_states=scoped)
        summary = await import_sessions(client, adk_sessions, progress=progress)
        await restore_scoped_states(client, scoped, summary)
    else:
        states: list[ScopedStateRecord] = []
        if arguments.file == "-":
            exported = read_export(sys.stdin, states)
            summary = await import_sessions(client, exported, progress=progress)
        else:
            with open(arguments.file, encoding="utf-8") as lines:  # noqa: ASYNC230 (see _export)
                exported = read_export(lines, states)
                summary = await import_sessions(client, exported, progress=progress)
        await restore_scoped_states(client, states, summary)
    summary.problems[:0] = problems
    progress.done(
        f"sessions: {summary.sessions_created} created, {summary.sessions_existing} existing;"
        f" events: {summary.events_appended} appended, {summary.events_present} already there"
    )
    for problem in summary.problems:
        print(f"agentstore import: {problem}", file=sys.stderr)
    return 1 if summary.problems else 0


class ProgressLine:
    """A progress line rewritten in place on a terminal; nothing elsewhere. The summary line
    is printed either way."""

    def __init__(self, stream: TextIO, verb: str) -> None:
        self._stream = stream
        self._verb = verb
        self._live = stream.isatty()
        self._started = time.monotonic()

    def __call__(self, sessions: int, events: int) -> None:
        if self._live:
            rate = events / max(time.monotonic() - self._started, 1e-9)
            self._stream.write(
                f"\r{self._verb} {sessions:,} sessions, {events:,} events ({rate:,.0f}/s) "
            )
            self._stream.flush()

    def done(self, summary: str) -> None:
        seconds = time.monotonic() - self._started
        prefix = "\r" if self._live else ""
        self._stream.write(f"{prefix}{summary} in {seconds:.1f} s\n")
        self._stream.flush()


async def _limited(items: AsyncIterator[Any], limit: int) -> AsyncIterator[Any]:
    count = 0
    async for item in items:
        if limit and count >= limit:
            await items.aclose()  # type: ignore[attr-defined]
            return
        count += 1
        yield item


class Output:
    """Tables for people, JSON lines for scripts."""

    def __init__(self, stream: TextIO, *, as_json: bool) -> None:
        self._stream = stream
        self._json = as_json
        self._colour = stream.isatty() and "NO_COLOR" not in os.environ
        self._mid_line = False  # streamed text printed without its end of line yet

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def _json_line(self, value: Any) -> None:
        self._line(json.dumps(plain(value), ensure_ascii=False, sort_keys=False))

    def note(self, text: str) -> None:
        if not self._json:
            self._line(text)

    def record(self, value: Any) -> None:
        if self._json:
            self._json_line(value)
            return
        for key, item in plain(value).items():
            shown = json.dumps(item, ensure_ascii=False) if isinstance(item, dict | list) else item
            self._line(f"{key + ':':<28}{shown}")

    def session_header(self) -> None:
        if not self._json:
            self._line(
                f"{'ID':<38} {'USER':<16} {'STATUS':<10} {'EVENTS':>7}  {'LAST EVENT':<19}  PREVIEW"
            )

    def session_row(self, session: Session) -> None:
        if self._json:
            self._json_line(session)
            return
        last = time_text(session.last_event_time)[:19] if session.last_event_time else "-"
        status = session.status.value if session.status else ""
        if session.delete_time:
            status += " (deleted)"
        preview = session.preview if len(session.preview) <= 60 else session.preview[:59] + "…"
        self._line(
            f"{session.id:<38} {session.user_id:<16} {status:<10} {session.event_count:>7}"
            f"  {last:<19}  {preview}"
        )

    def event(self, event: Event) -> None:
        if self._json:
            self._json_line(event)
            return
        text = event.content.text if event.content else json.dumps(event.data or {})
        when = time_text(event.create_time)[11:19] if event.create_time else ""
        self._line(f"{event.seq:>6}  {when}  {event.type:<18} {event.author:<14} {text}")

    def live_event(self, event: Event, *, with_session: bool) -> None:
        if self._json:
            self._json_line(event)
            return
        if event.type in PARTIAL_TYPES:
            # Streamed text shows as it streams: pieces on one line, ended by the next event.
            piece = str((event.data or {}).get("delta", ""))
            self._stream.write(self._paint(piece, event) if piece else "")
            self._stream.flush()
            self._mid_line = True
            return
        if self._mid_line:
            self._stream.write("\n")
            self._mid_line = False
        where = f"{event.session_id}#{event.seq}" if with_session else f"#{event.seq}"
        text = event.content.text if event.content else json.dumps(event.data or {})
        label = self._paint(f"{event.type:<16}", event)
        self._line(f"{where:<12} {label} {event.author:<12} {text}")

    def hit(self, hit: SearchHit) -> None:
        if self._json:
            self._json_line(hit)
            return
        snippet = hit.snippet
        bold, plain_text = ("\x1b[1m", "\x1b[0m") if self._colour else ("*", "*")
        snippet = snippet.replace("<b>", bold).replace("</b>", plain_text)
        self._line(f"{hit.score:6.3f}  {hit.event.session_id}#{hit.event.seq}  {snippet}")

    def _paint(self, text: str, event: Event) -> str:
        if not self._colour:
            return text
        role = event.content.role if event.content else ""
        kind = "error" if "error" in event.type else (role or event.author)
        colour = _COLOURS.get(kind, "0")
        return f"\x1b[{colour}m{text}\x1b[0m"
