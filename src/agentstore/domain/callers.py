"""Who is calling, which apps a call may touch, and what it may do there.

The api layer makes a `Caller` for every call and it flows through the service into every
store query, each of which takes the `Scope` it may touch explicitly. Without authentication
every caller is `ANONYMOUS`: an admin of every app. With API keys, a key's apps make the
scope and its role what it may do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from agentstore.domain.errors import PermissionDenied, outside_scope

__all__ = ["ANONYMOUS", "EVERY_APP", "Caller", "Recheck", "Role", "Scope"]

# For a long-lived call: raises `Unauthenticated` once the caller's credential is no longer
# valid (revoked or expired), so that open streams end with it.
Recheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scope:
    """The apps a call may touch: every app when `apps` is None, else only those named."""

    apps: tuple[str, ...] | None = None

    def allows(self, app_name: str) -> bool:
        return self.apps is None or app_name in self.apps

    @property
    def app_names(self) -> list[str] | None:
        """The scope as store queries bind it (`%(apps)s::text[]`; null: every app)."""
        return None if self.apps is None else list(self.apps)


EVERY_APP = Scope()


class Role(StrEnum):
    """What a caller may do in its apps: read; read and write; or that and manage them."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity behind a call, the scope it brings and its role there."""

    name: str
    scope: Scope
    role: Role = Role.ADMIN

    def check_app(self, app_name: str) -> None:
        """Raises `PermissionDenied` unless the caller's scope reaches `app_name`."""
        if not self.scope.allows(app_name):
            raise outside_scope(app_name)

    def check_admin(self, field: str = "") -> None:
        """Raises `PermissionDenied` for a caller that is not an admin (of its apps); `field`
        names the part of the request that needs one, when only that part does."""
        if self.role is not Role.ADMIN:
            if not field:
                raise PermissionDenied("this takes an admin key", reason="ADMIN_KEY_REQUIRED")
            raise PermissionDenied(
                f"{field}: only an admin key may set it",
                reason="ADMIN_KEY_REQUIRED",
                metadata={"field": field},
            )

    def check_writes(self) -> None:
        """Raises `PermissionDenied` for a caller that may only read."""
        if self.role is Role.READER:
            raise PermissionDenied("this key may only read", reason="READ_ONLY_KEY")


# Without authentication every call comes from nobody in particular, with every right.
ANONYMOUS = Caller("anonymous", EVERY_APP, Role.ADMIN)
