"""Who is calling, and which apps a call may touch.

The api layer makes a `Caller` for every call and it flows through the service into every
store query, each of which takes the `Scope` it may touch explicitly. Today every caller is
`ANONYMOUS`, whose scope is every app; credentials scoped to apps only need to make a
narrower Caller, in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANONYMOUS", "EVERY_APP", "Caller", "Scope"]


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


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity behind a call and the scope it brings."""

    name: str
    scope: Scope


# No credentials are checked yet: every call comes from nobody in particular.
ANONYMOUS = Caller("anonymous", EVERY_APP)
