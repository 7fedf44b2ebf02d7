"""`agentstore keys create|list|revoke`: API keys, managed against the database like migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

from agentstore.app import with_keys
from agentstore.config import Settings, parse_duration
from agentstore.domain.callers import Role
from agentstore.domain.errors import DomainError
from agentstore.domain.keys import ApiKey
from agentstore.service.keys import KeyService

__all__ = ["add_key_commands", "run_keys"]


def add_key_commands(keys: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The subcommands of `agentstore keys`; returns their parsers (for the setting flags)."""
    actions = keys.add_subparsers(dest="key_command", required=True)
    create = actions.add_parser("create", help="make a key and print it once")
    create.add_argument(
        "--app", action="append", default=[], dest="apps", metavar="APP",
        help="an app the key reaches (repeat for more; none: an admin of every app)",
    )  # fmt: skip
    create.add_argument(
        "--role", required=True, choices=[role.value for role in Role],
        help="reader: read; writer: read and write; admin: also delete in bulk",
    )  # fmt: skip
    create.add_argument("--name", default="", help="what the key is for, shown by list")
    create.add_argument("--expires", metavar="DURATION", help="for example 90d; default never")
    listing = actions.add_parser("list", help="every key, never the key itself")
    revoke = actions.add_parser("revoke", help="stop a key working, on every replica")
    revoke.add_argument("key_id", metavar="ID", help="the key's id (key_...), from list")
    return [create, listing, revoke]


def run_keys(arguments: argparse.Namespace, settings: Settings) -> int:
    try:
        if arguments.key_command == "create":
            return asyncio.run(with_keys(settings, lambda keys: _create(keys, arguments)))
        if arguments.key_command == "list":
            return asyncio.run(with_keys(settings, _list))
        return asyncio.run(with_keys(settings, lambda keys: _revoke(keys, arguments.key_id)))
    except DomainError as exc:
        print(f"agentstore: {exc.message}", file=sys.stderr)
        return 1


async def _create(keys: KeyService, arguments: argparse.Namespace) -> int:
    expires = None
    if arguments.expires:
        try:
            expires = parse_duration(arguments.expires)
        except ValueError as exc:
            print(f"agentstore: invalid --expires: {exc}", file=sys.stderr)
            return 1
    stored, secret = await keys.create(
        apps=arguments.apps, role=Role(arguments.role), name=arguments.name, expires_in=expires
    )
    for line in _describe(stored):
        print(line, file=sys.stderr)
    print("the key (shown only now; store it as a secret):", file=sys.stderr)
    print(secret)
    return 0


async def _list(keys: KeyService) -> int:
    rows = [("ID", "NAME", "APPS", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")]
    for key in await keys.list():
        rows.append(
            (
                key.id, key.name or "-", ",".join(key.apps) if key.apps else "(every app)",
                key.role.value, _when(key.create_time), _when(key.last_used_time),
                _when(key.expire_time), _when(key.revoke_time),
            )
        )  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


async def _revoke(keys: KeyService, key_id: str) -> int:
    revoked = await keys.revoke(key_id)
    print(f"revoked {revoked.id}: it stops working within a second on every server")
    return 0


def _describe(key: ApiKey) -> list[str]:
    return [
        f"id:      {key.id}",
        f"name:    {key.name or '-'}",
        f"apps:    {', '.join(key.apps) if key.apps else '(every app)'}",
        f"role:    {key.role.value}",
        f"expires: {_when(key.expire_time)}",
    ]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"
