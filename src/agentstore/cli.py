"""`agentstore serve`, `agentstore migrate` and `agentstore keys`: the server's subcommands of
the `agentstore` command (agentstore.client.cli), registered as "agentstore.commands" entry
points in pyproject.toml. Each is called with the whole argument list, its name first."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from agentstore.app import StartupError, migrate, serve
from agentstore.config import Settings, env_name, flag_name
from agentstore.keys_cli import add_key_commands, run_keys
from agentstore.logs import configure_logging

__all__ = ["load_settings", "main"]


def _display(value: object) -> str:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"{int(seconds // size)}{unit}"
        return f"{seconds:g}s"
    return "unset" if value is None else str(value)


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        default = _display(field.get_default(call_default_factory=True))
        if field.annotation is bool:  # a switch: --insecure, or AGENTSTORE_INSECURE=true
            parser.add_argument(
                flag_name(name), dest=name, action="store_const", const="true", default=None,
                help=f"{field.description} [env {env_name(name)}=true]",
            )  # fmt: skip
            continue
        parser.add_argument(
            flag_name(name),
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{field.description} [env {env_name(name)}; default {default}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentstore",
        description="Durable, searchable, live-streamable memory for AI-agent sessions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_setting_flags(commands.add_parser("serve", help="run the gRPC server"))
    _add_setting_flags(
        commands.add_parser("migrate", help="apply pending database migrations and exit")
    )
    keys = commands.add_parser("keys", help="make, list and revoke API keys")
    for command in add_key_commands(keys):
        _add_setting_flags(command)
    return parser


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Settings from flags, then `AGENTSTORE_*` variables, then defaults. Raises `SystemExit`
    with a message naming the flag and variable of each bad value."""
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        if flags.get(name) is not None:
            values[name] = flags[name]
        elif env_name(name) in environ:
            values[name] = environ[env_name(name)]
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            where = f"{flag_name(name)} / {env_name(name)}" if name else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"agentstore: invalid {where}: {message}")
        raise SystemExit("\n".join(lines)) from None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    settings = load_settings(vars(arguments), os.environ)
    configure_logging(settings.log_level, settings.log_format)
    try:
        if arguments.command == "serve":
            asyncio.run(serve(settings))
            return 0
        if arguments.command == "keys":
            return run_keys(arguments, settings)
        applied = asyncio.run(migrate(settings))
    except StartupError as exc:
        print(f"agentstore: {exc}", file=sys.stderr)
        return 1
    print(f"applied {applied} migration(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
