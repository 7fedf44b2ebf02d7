"""Schema migrations: numbered `.sql` files in migrations/, applied in order, each in its own
transaction, under a session advisory lock so that replicas starting together take turns."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from agentstore.store.queries import query

__all__ = ["Migration", "MigrationError", "apply_migrations", "load_migrations"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any fixed 64-bit number works; this one is "agentsto" in ASCII, unlikely to collide.
MIGRATION_LOCK_KEY = 0x6167656E7473746F
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

LEDGER_EXISTS = query("migrations", "ledger_exists")
CREATE_LEDGER = query("migrations", "create_ledger")
SELECT_APPLIED = query("migrations", "select_applied")
INSERT_APPLIED = query("migrations", "insert_applied")
LOCK = query("migrations", "lock")
UNLOCK = query("migrations", "unlock")


class MigrationError(RuntimeError):
    """The database's migration history does not match the migration files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order. Raises `MigrationError` on a misnamed file or a
    gap in the numbering."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing")
    return migrations


async def apply_migrations(conninfo: str, migrations: list[Migration] | None = None) -> int:
    """Bring the database at `conninfo` up to date; returns how many migrations were applied.

    Safe to call from several processes at once: the advisory lock makes them take turns, and
    each finds what the others applied. Raises `MigrationError` when an applied migration's
    file was changed since, and `psycopg.Error` when a migration fails (that migration is
    rolled back; the ones before it stay)."""
    migrations = load_migrations() if migrations is None else migrations
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        await connection.execute(LOCK, (MIGRATION_LOCK_KEY,))
        try:
            return await _apply_pending(connection, migrations)
        finally:
            await connection.execute(UNLOCK, (MIGRATION_LOCK_KEY,))


async def _apply_pending(
    connection: psycopg.AsyncConnection[tuple[object, ...]], migrations: list[Migration]
) -> int:
    exists = await (await connection.execute(LEDGER_EXISTS)).fetchone()
    if not (exists and exists[0]):
        await connection.execute(CREATE_LEDGER)
    cursor = await connection.execute(SELECT_APPLIED)
    applied = {int(str(row[0])): str(row[2]) for row in await cursor.fetchall()}
    known = {migration.version for migration in migrations}
    if unknown := sorted(set(applied) - known):
        # A newer release migrated this database: run on, the schema only ever grows.
        log.warning("database has migrations newer than this release", extra={"versions": unknown})
    count = 0
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it "
                    "was applied; add a new migration instead"
                )
            continue
        async with connection.transaction():
            await connection.execute(migration.sql.encode())
            await connection.execute(
                INSERT_APPLIED, (migration.version, migration.name, migration.checksum)
            )
        log.info(
            "applied migration", extra={"migration": f"{migration.version:04d}_{migration.name}"}
        )
        count += 1
    return count
