"""tierproof's one error tree.

Every library exception is translated into one of these in exactly one place with
``raise ... from exc``; the API maps the tree to RFC 9457 problem responses in one handler.
"""

from __future__ import annotations


class TierproofError(Exception):
    """Base of every error tierproof raises on purpose."""


class ConfigError(TierproofError):
    """A configuration file or field is invalid.

    ``problems`` holds one ``(location, reason)`` pair per problem, where location is
    ``file: field.path`` so that a user can find the line to fix.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        if len(self.problems) == 1:  # one line
            loc, reason = self.problems[0]
            head = super().__str__()
            if head.endswith("invalid field(s)"):
                return f"{loc}: {reason}"
            if reason in head:
                return head if loc in head else f"{head} ({loc})"
            return f"{head}; {loc}: {reason}"
        lines = [super().__str__()]
        lines += [f"  {loc}: {reason}" for loc, reason in self.problems]
        return "\n".join(lines)


class CollectorError(TierproofError):
    """A collector failed to read from a device."""


class ConnectError(CollectorError):
    """The device could not be reached (refused, timed out, closed the connection)."""


class DeviceRequestError(CollectorError):
    """The device answered a request with an error (e.g. a Modbus exception response).

    Affects only the tags of that request; the device stays connected.
    """


class StoreError(TierproofError):
    """The store could not write or read."""


class SinkUnavailable(StoreError):
    """A remote store could not take a write for now: unreachable, timed out, 5xx or 429.

    The batch is not lost: the spool keeps it and retries, after ``retry_after_s`` when the
    server said so (``Retry-After``).
    """

    def __init__(
        self, message: str, retry_after_s: float | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        #: no answer at all (refused, reset, timed out): the spool probes it cheaply to resume
        #: as soon as it answers again, rather than waiting out its backoff
        self.unreachable = unreachable


class SinkUnauthorized(SinkUnavailable):
    """The remote store refuses our credentials (401) or permissions (403). Retried with backoff
    like an outage, never quarantined: a rotated token or a revoked grant can be fixed without
    losing the batches waiting meanwhile."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SinkRejected(StoreError):
    """A remote store refused a write for good (a 4xx other than 401, 403 and 429): retrying the same
    batch cannot succeed, so it goes to the quarantine with ``status`` and ``reason``."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KpiError(TierproofError):
    """A KPI could not be computed from what was asked (unknown asset, empty window...)."""


class NotFoundError(TierproofError):
    """A named asset, tag, line or device does not exist."""
