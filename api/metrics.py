"""``/metrics`` in the Prometheus text format: what the gateway already counts, read at scrape.

Nothing is counted on the collection path for Prometheus: :class:`GatewayCollector` reads, when
scraped, the counters the supervisor, the writer, the store and its spool, the KPI runner and
the roll-up maintainer keep anyway -- the figures of ``/api/v1/collector/status``,
``/api/v1/health`` and ``/api/v1/store/spool`` -- the way those routes read them from the
collectors' thread (snapshots and plain integers). Labels are per device (and per drop
reason, per state), never per tag: a plant of 10,000 tags scrapes like one of its devices'
count (``bench/bench_metrics.py``).

The one thing measured for it is the API's own traffic: :class:`HttpMetrics`, a pure ASGI
middleware, times every request by **route template** (``/api/v1/tags/{tag_path}/latest``, not
the raw path: no label per tag or per fuzzed URL), method and status class, and counts the
requests in flight.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (``app.state.metrics``),
not the process-global one: several apps in one process (tests) do not share or clash.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .version import VERSION

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "NAMESPACE", "GatewayCollector", "HttpMetrics",
           "HttpStats", "exposition", "install_metrics", "label_value"]

NAMESPACE: Final = "tierproof"
#: the exposition's media type: the Prometheus text format 0.0.4, which every Prometheus reads
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
#: upper bounds (s) of the request-duration histogram: Prometheus's defaults up to 10 s, then the
#: long KPI windows and assessments
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: a device's states (``collector.supervisor.State``): one gauge per state, 1 for the current one
DEVICE_STATES: Final = ("connecting", "connected", "backoff", "stopped", "disabled")
#: the sink's states behind a spool (``store.spool.store.ForwardStats.sink``)
SINK_STATES: Final = ("ok", "unavailable", "unauthorized")
#: methods named in labels; anything else (a fuzzer's ``FOO``) is ``other``
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the route label of a request no route matched (a 404, or refused before routing)
UNMATCHED: Final = "unmatched"
_NOT_LABEL: Final = re.compile(r"[^a-z0-9]+")


def label_value(reason: str) -> str:
    """A drop reason as a label value: lower case, runs of anything else as one ``_``
    (``payload too large`` -> ``payload_too_large``)."""
    return _NOT_LABEL.sub("_", reason.lower()).strip("_") or "unknown"


def _name(suffix: str) -> str:
    return f"{NAMESPACE}_{suffix}"


# --------------------------------------------------------------------------- HTTP


class HttpStats:
    """Request durations per (method, route template, status class), and requests in flight.

    Observed on the API's event loop, read by a scrape on a worker thread: one lock, held for
    an increment or a copy."""

    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.in_flight = 0
        self._lock = threading.Lock()
        #: key -> (counts per bucket, +Inf last; not cumulative), sum of seconds
        self._series: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method if method in _METHODS else "other", route, f"{status // 100}xx")
        i = bisect.bisect_left(self.buckets, seconds)  # the first bound >= seconds (``le``)
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = ([0] * (len(self.buckets) + 1), [0.0])
            s[0][i] += 1
            s[1][0] += seconds

    def snapshot(self) -> list[tuple[tuple[str, str, str], list[int], float]]:
        with self._lock:
            return [(k, list(c), t[0]) for k, (c, t) in self._series.items()]

    def collect(self) -> Iterator[Metric]:
        h = HistogramMetricFamily(
            _name("http_request_duration_seconds"),
            "API requests by method, route template and status class (2xx, 4xx, 5xx), from the "
            "request's arrival to the end of its answer", labels=["method", "route", "status"])
        bounds = [f"{b:g}" for b in self.buckets] + ["+Inf"]
        for key, counts, total in sorted(self.snapshot()):
            cumulative, acc = [], 0
            for bound, c in zip(bounds, counts, strict=True):
                acc += c
                cumulative.append((bound, acc))
            h.add_metric(list(key), cumulative, sum_value=total)
        yield h
        yield GaugeMetricFamily(_name("http_requests_in_flight"),
                                "API requests being answered now (this one included)",
                                value=self.in_flight)


def _route(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/tags/{tag_path}/latest``)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class HttpMetrics:
    """ASGI middleware: every HTTP request's duration into :class:`HttpStats` (outermost of the
    app's middleware, so a 500 made of an unexpected exception counts as one)."""

    def __init__(self, app: ASGIApp, stats: HttpStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before any answer: what the client gets

        async def tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        stats = self.stats
        stats.in_flight += 1
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, tracking)
        finally:
            stats.in_flight -= 1
            stats.observe(str(scope.get("method", "")), _route(scope), status,
                          time.perf_counter() - t0)


class _HttpCollector(Collector):
    def __init__(self, stats: HttpStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        return self.stats.collect()


# --------------------------------------------------------------------------- the gateway


def _counter(suffix: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(_name(suffix), doc, labels=list(labels))


def _gauge(suffix: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(_name(suffix), doc, labels=list(labels))


class GatewayCollector(Collector):
    """Reads the running gateway's counters at scrape time (see the module doc); ``state`` is
    the app's ``app.state`` (the gateway, the KPI runner and the roll-up maintainer appear
    there when the lifespan starts)."""

    def __init__(self, state: Any, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._state = state
        self._clock = clock_ns

    def collect(self) -> Iterable[Metric]:
        state = self._state
        settings = getattr(state, "settings", None)
        info = _gauge("build_info", "Always 1: the version and the store type", ["version", "store"])
        info.add_metric([VERSION, str(getattr(getattr(settings, "store", None), "type", ""))], 1)
        yield info
        gw = getattr(state, "gateway", None)
        if gw is None:  # before the lifespan started
            return
        now = self._clock()
        yield from _devices(gw.supervisor.status() if gw.supervisor is not None else [], now)
        yield from _writer(gw.writer)
        yield from _store(gw.store, now)
        runner = getattr(state, "runner", None)
        if runner is not None:
            yield from _kpi(runner.status())
        rollups = getattr(state, "rollups", None)
        if rollups is not None:
            yield from _rollups(rollups)


def _devices(devices: Sequence[Any], now_ns: int) -> Iterator[Metric]:
    labels = ["device", "protocol"]
    counters = [
        ("samples_delivered", _counter(
            "device_points_received_total", "Samples the device's collector delivered", labels)),
        ("samples_stored", _counter(
            "device_points_stored_total", "Of the samples received, those handed to the store "
            "(polled tags stored on change keep their changes and heartbeats)", labels)),
        ("bad_samples", _counter(
            "device_points_bad_quality_total", "Samples received with bad quality", labels)),
        ("non_finite", _counter(
            "device_points_non_finite_total", "Samples whose value was NaN or +-infinity: stored "
            "with bad quality, not dropped", labels)),
        ("reconnects", _counter(
            "device_reconnects_total", "Successful connections after a lost or failed one", labels)),
        ("gaps", _counter(
            "device_gaps_total", "Gaps recorded since start: connection lost, collection stalled, "
            "part of the device gone (a Sparkplug node's death)", labels)),
        ("stalls", _counter(
            "device_stalls_total", "Times the collectors could not run beyond the tolerance while "
            "the device was collected (each a gap)", labels)),
        ("stalled_s", _counter(
            "device_stalled_seconds_total", "The length of those stalls", labels)),
    ]
    state = _gauge("device_state", "1 for the device's current state, 0 for the others",
                   [*labels, "state"])
    gap_open = _gauge("device_gap_open", "1 while a gap of the whole device is open", labels)
    gap_age = _gauge("device_gap_open_seconds", "How long the open gap has lasted (0: none)", labels)
    last = _gauge("device_last_success_timestamp_seconds",
                  "When the device last delivered data (Unix time)", labels)
    tag_errors = _gauge("device_tag_errors", "Tags (and OPC UA browse rules) in error now", labels)
    drops = _counter("device_drops_total", "Messages (or Sparkplug metrics) dropped, by reason "
                     "(payload_too_large, malformed_json, wrong_type, unknown_topic, ...)",
                     [*labels, "reason"])
    # Samples appended directly, sharing one labels dict per device (and per state): no
    # dict(zip(...)) per sample, and the writer renders each labels dict once (``exposition``)
    def add(family: Metric, labels: dict[str, str], value: float) -> None:
        name = f"{family.name}_total" if family.type == "counter" else family.name
        family.samples.append(Sample(name, labels, value, None, None))

    for d in devices:
        key = {"device": d.name, "protocol": d.protocol}
        for attr, family in counters:
            add(family, key, getattr(d, attr))
        for st in DEVICE_STATES:
            add(state, {**key, "state": st}, 1.0 if d.state == st else 0.0)
        add(gap_open, key, 0.0 if d.gap_open_since is None else 1.0)
        add(gap_age, key, 0.0 if d.gap_open_since is None
            else max(0, now_ns - d.gap_open_since) / 1e9)
        if d.last_success is not None:
            add(last, key, d.last_success / 1e9)
        add(tag_errors, key, len(d.tag_errors))
        by_reason: dict[str, int] = {}
        for reason, n in d.dropped.items():
            r = label_value(reason)
            by_reason[r] = by_reason.get(r, 0) + n
        for r, n in sorted(by_reason.items()):
            add(drops, {**key, "reason": r}, n)
    for _, family in counters:
        yield family
    yield from (state, gap_open, gap_age, last, tag_errors, drops)


def _writer(writer: Any) -> Iterator[Metric]:
    s = writer.stats
    for suffix, value, doc in (
        ("store_points_written_total", s.points_written, "Points written to the store (its "
         "rate is the write throughput)"),
        ("store_batches_written_total", s.batches_written, "Batches written to the store"),
        ("store_points_failed_total", s.points_failed, "Points of writes the store refused"),
        ("store_batches_failed_total", s.batches_failed, "Batches of writes the store refused"),
        ("store_writes_total", s.groups_written, "Store writes (group commits of one or more "
         "batches), successful or not"),
        ("store_write_failures_total", s.groups_failed, "Store writes that failed"),
    ):
        yield CounterMetricFamily(_name(suffix), doc, value=value)
    yield GaugeMetricFamily(_name("store_pending_batches"), "Batches submitted to the writer and "
                            "not yet written", value=writer.pending)


def _store(store: Any, now_ns: int) -> Iterator[Metric]:
    damage = getattr(store, "damage", None)
    if callable(damage):
        yield GaugeMetricFamily(_name("store_damaged_chunks"), "Damage records of the embedded "
                                "store: chunks, and ingest rows per tag (read as gaps; "
                                "`tierproof store verify`)", value=len(damage()))
    spool_stats = getattr(store, "spool_stats", None)
    if callable(spool_stats):
        yield from _spool(spool_stats(), now_ns)


def _spool(s: dict[str, Any], now_ns: int) -> Iterator[Metric]:
    for suffix, key, doc in (
        ("spool_batches", "batches", "Batches waiting in the spool"),
        ("spool_points", "points", "Points waiting in the spool"),
        ("spool_bytes", "bytes", "Bytes the spool holds"),
        ("spool_max_bytes", "max_bytes", "The spool's capacity (store.spool.max_bytes)"),
        ("spool_quarantined_batches", "quarantined_batches", "Batches the sink refused, kept in "
         "the quarantine"),
        ("spool_quarantined_points", "quarantined_points", "Points in the quarantine"),
    ):
        yield GaugeMetricFamily(_name(suffix), doc, value=s.get(key) or 0)
    oldest = s.get("oldest_spooled_ns")
    yield GaugeMetricFamily(_name("spool_oldest_age_seconds"), "How long the oldest spooled "
                            "batch has waited (0: the spool is empty)",
                            value=0.0 if oldest is None else max(0, now_ns - oldest) / 1e9)
    dropped = _counter("spool_dropped_points_total", "Points lost on purpose, by reason: spool "
                       "full (drop_oldest, refuse_newest), quarantine full, dropped by InfluxDB "
                       "itself from a write it otherwise stored (partial_write)", ["reason"])
    for reason, key in (("drop_oldest", "dropped_oldest_points"),
                        ("refuse_newest", "refused_newest_points"),
                        ("quarantine_full", "quarantine_dropped_points"),
                        ("partial_write", "partial_write_dropped_points")):
        dropped.add_metric([reason], s.get(key) or 0)
    yield dropped
    yield CounterMetricFamily(_name("spool_lost_points_total"), "Spooled points lost to damage "
                              "of the spool's files", value=s.get("lost_points") or 0)
    for suffix, key, doc in (
        ("sink_direct_points_total", "direct_points", "Points written straight to the sink"),
        ("spool_spooled_points_total", "spooled_points", "Points accepted into the spool"),
        ("spool_drained_points_total", "drained_points", "Points sent from the spool to the sink"),
    ):
        yield CounterMetricFamily(_name(suffix), doc, value=s.get(key) or 0)
    sink = _gauge("sink_state", "1 for the sink's (InfluxDB's) current state", ["state"])
    now = str(s.get("sink", "ok"))
    for st in SINK_STATES:
        sink.add_metric([st], 1.0 if now == st else 0.0)
    yield sink


def _kpi(s: dict[str, Any]) -> Iterator[Metric]:
    for suffix, key, doc in (
        ("kpi_computations_total", "computed", "KPI computations started"),
        ("kpi_joined_requests_total", "joined", "KPI requests that joined a computation in flight"),
        ("kpi_cache_hits_total", "cache_hits", "KPI requests answered from the closed-result cache"),
        ("kpi_cache_invalidations_total", "invalidated", "Cached results dropped by a write to "
         "their window"),
        ("kpi_recent_hits_total", "recent_hits", "Open-window KPI requests answered with a recent "
         "computation (api.kpi_max_age_s)"),
    ):
        yield CounterMetricFamily(_name(suffix), doc, value=s.get(key) or 0)
    yield GaugeMetricFamily(_name("kpi_computations_in_flight"), "KPI computations running",
                            value=s.get("in_flight") or 0)
    yield GaugeMetricFamily(_name("kpi_cache_bytes"), "Bytes of cached KPI results",
                            value=s.get("cached_bytes") or 0)


def _rollups(m: Any) -> Iterator[Metric]:
    yield CounterMetricFamily(_name("rollup_rows_computed_total"), "Hourly and daily roll-up rows "
                              "computed", value=m.computed)
    lag = m.lag_s()
    if lag is not None:
        yield GaugeMetricFamily(_name("rollup_lag_seconds"), "How far the hourly roll-ups trail "
                                "the newest closed hour (0: all rolled up)", value=lag)


# --------------------------------------------------------------------------- wiring


def install_metrics(app: FastAPI) -> None:
    """Give ``app`` its own registry (``app.state.metrics``: the gateway's counters, the API's
    request histogram, the process's CPU and memory) and the request-timing middleware. Call
    it after every other ``add_middleware``: the last added is the outermost."""
    registry = CollectorRegistry()
    stats = HttpStats()
    registry.register(GatewayCollector(app.state))
    registry.register(_HttpCollector(stats))
    ProcessCollector(namespace=NAMESPACE, registry=registry)
    app.state.metrics = registry
    app.state.http_stats = stats
    app.add_middleware(HttpMetrics, stats=stats)


#: metric types the lean writer below renders (every type this module's collectors emit)
_PLAIN_TYPES: Final = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


@functools.lru_cache(maxsize=1 << 14)
def _labels(items: tuple[tuple[str, str], ...]) -> str:
    """``{k="v",...}`` of a sample's labels, sorted by name, values escaped. Cached: a device's
    labels are the same in each of its families and from one scrape to the next."""
    return "{" + ",".join(
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"'))
        for k, v in sorted(items)) + "}"


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format 0.0.4: byte for byte what
    ``prometheus_client.generate_latest`` writes (a test compares them), for the metric types
    and samples this module emits (no timestamps, no ``_created``), in less time: the library
    re-validates and re-escapes every metric and label name of every sample (a plant of 500
    devices has ~8,500 samples; ~1.7x the time, docs/benchmarks.md "Metrics scrape"), where
    this writer renders each labels dict once. Anything else (another type, a timestamp, a
    ``_created`` sample) is written by the library."""
    families = list(registry.collect())
    out: list[str] = []
    #: id of a labels dict -> its rendering, for this call (the dicts live in ``families``)
    rendered: dict[int, str] = {}
    for m in families:
        typ = _PLAIN_TYPES.get(m.type)
        if typ is None or any(s.timestamp is not None or s.name.endswith("_created")
                              for s in m.samples):
            return generate_latest(registry)
        name = f"{m.name}_total" if typ == "counter" else m.name
        doc = m.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {typ}\n")
        for s in m.samples:
            if s.labels:
                text = rendered.get(id(s.labels))
                if text is None:
                    text = rendered[id(s.labels)] = _labels(tuple(s.labels.items()))
                out.append(f"{s.name}{text} {floatToGoString(s.value)}\n")
            else:
                out.append(f"{s.name} {floatToGoString(s.value)}\n")
    return "".join(out).encode("utf-8")
