"""Dependencies of the routes (``Depends``): what the app holds, the request's one ``now``, and
instants and windows from queries.

The dependencies are ``async def`` although they never wait: FastAPI runs a plain ``def``
dependency in its thread pool, a hand-over to a worker thread and back for each of them on
every request (with the GIL passed to and fro, the largest part of a cached answer's cost
under 50 concurrent clients, docs/benchmarks.md); a coroutine that does not wait runs inline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from time import time_ns
from typing import Annotated

from fastapi import Depends, Request

from config.errors import KpiError
from config.settings import Settings
from config.times import NonexistentTime, Window, iso, parse_instant, to_ns

from .flight import KpiRunner
from .gateway import Gateway
from .problems import BadParameter, echo
from .service import KpiService

__all__ = [
    "GatewayDep", "NowDep", "RunnerDep", "ServiceDep", "SettingsDep", "check_window", "instant",
    "now_of", "window", "window_out",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def get_settings(request: Request) -> Settings:
    """The settings the app was built for (set by ``create_app``)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_gateway(request: Request) -> Gateway:
    """The running gateway (set by the app's lifespan)."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_service(request: Request) -> KpiService:
    """The KPI service over the gateway's store (set by the app's lifespan)."""
    service: KpiService = request.app.state.service
    return service


async def get_runner(request: Request) -> KpiRunner:
    """Where KPI computations run: worker threads, single flight, closed-result cache."""
    runner: KpiRunner = request.app.state.runner
    return runner


async def request_now(request: Request) -> datetime:
    """The request's one ``now``: every relative instant of one request (``now-7d`` and
    ``now`` of a default window, the baseline's) is resolved against it, so that a default
    window of ``now-7d`` .. ``now`` is exactly 7 days long. FastAPI calls a dependency once
    per request.

    It is the clock rounded down to the app's ``now_quantum_s`` (1 s by default): requests
    of a relative window within one quantum resolve to the same instants, hence are identical
    and share one computation (``api.flight``); the answer's ``window`` records the instants
    used. Explicit instants are not touched."""
    return now_of(request.app.state)


def now_of(state: object) -> datetime:
    """:func:`request_now` for the app whose ``app.state`` is ``state`` (``api.fastlane``)."""
    ns = time_ns()
    quantum = int(getattr(state, "now_quantum_s", 0.0) * 1e9)
    if quantum > 0:
        ns -= ns % quantum
    return _EPOCH + timedelta(microseconds=ns // 1000)  # exact, unlike a float timestamp


SettingsDep = Annotated[Settings, Depends(get_settings)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
ServiceDep = Annotated[KpiService, Depends(get_service)]
NowDep = Annotated[datetime, Depends(request_now)]
RunnerDep = Annotated[KpiRunner, Depends(get_runner)]


#: characters an instant's text can have (an ISO 8601 time with nanoseconds and an offset
#: has 35); a longer input is refused without being echoed in full
_INSTANT_MAX = 64


def instant(value: str | None, default: str, name: str, now: datetime,
            tz: tzinfo | None = None) -> datetime:
    """Query parameter ``name`` (or ``default`` when absent) as an instant, relative ones
    against ``now``, dates and times without an offset in ``tz`` (the plant's zone, or the
    request's ``tz=``; UTC when None). Not an instant: a KpiError (422) naming the parameter;
    an instant outside the range of stored times (1970-01-01..2262-04-11, e.g. ``9999-01-01``
    or ``now-99999999999d``), or a local time the clocks skip in ``tz``: a BadParameter
    (400)."""
    text = value if value is not None else default
    if len(text) > _INSTANT_MAX:
        raise KpiError(f"parameter {name!r}: {echo(text, 40)} is not an instant (ISO 8601, "
                       "'now', 'now-7d')")
    try:
        at = parse_instant(text, now, tz)
    except NonexistentTime as exc:  # a wall-clock time the clocks skip: no instant reads it
        raise BadParameter(name, str(exc)) from exc
    except OverflowError as exc:  # timedelta or datetime arithmetic beyond year 1..9999
        raise BadParameter(name, f"{echo(text)} is outside 1970-01-01..2262-04-11, the "
                                 "range of stored times") from exc
    except ValueError as exc:
        raise KpiError(f"parameter {name!r}: {echo(text)} is neither an ISO 8601 time nor "
                       "'now', 'now-7d', 'now-12h'") from exc
    try:
        to_ns(at)  # within the range of stored times, or the parameter is at fault
    except ValueError as exc:
        raise BadParameter(name, str(exc)) from exc
    return at


def check_window(settings: Settings, start: datetime, end: datetime,
                 names: tuple[str, str] = ("from", "to")) -> None:
    """A KPI window longer than ``api.max_kpi_window_days`` is a BadParameter naming the
    window's start parameter and the limit."""
    days = settings.api.max_kpi_window_days
    if end - start > timedelta(days=days):
        length = (end - start) / timedelta(days=1)
        raise BadParameter(
            names[0], f"the window {names[0]}..{names[1]} is {length:.6g} days long, more than "
            f"api.max_kpi_window_days ({days:g}): ask for a shorter window",
            limit=("api.max_kpi_window_days", days))


def window(
    start: str | None, end: str | None, default: Window, now: datetime,
    names: tuple[str, str] = ("from", "to"), tz: tzinfo | None = None,
    plant_tz: tzinfo | None = None,
) -> tuple[datetime, datetime]:
    """The window [start, end) of a request: each end from its parameter (bare times in
    ``tz``), else from the configured ``default`` (``kpi.current``, ``kpi.baseline``; bare
    times in ``plant_tz``), both against the request's ``now``. An empty window is a
    KpiError."""
    lo = instant(start, default.start, names[0], now, tz if start is not None else plant_tz)
    hi = instant(end, default.end, names[1], now, tz if end is not None else plant_tz)
    if hi <= lo:
        raise KpiError(f"the window is empty: {names[1]} ({hi.isoformat()}) is not after "
                       f"{names[0]} ({lo.isoformat()})")
    return lo, hi


def window_out(start: datetime, end: datetime, tz: tzinfo | None = None) -> dict[str, str | None]:
    """A resolved window as the API records it: ISO 8601 exact to the microsecond, UTC (or in
    ``tz`` with its offset)."""
    return {"from": iso(to_ns(start), tz=tz), "to": iso(to_ns(end), tz=tz)}
