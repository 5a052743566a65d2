"""InfluxQL statements for the store's reads, and the ``/query`` JSON answer as numpy columns.

Reads ask for ``epoch=ns`` (integer nanosecond times, exact) and ``chunked=true`` (the server
streams one JSON object per line, each holding part of a statement's rows, so neither the
server's ``max-row-limit`` nor one huge JSON document bounds a read). Lines are decoded with
orjson (a 7-day ``/kpis``' 680 kB of samples: ~3 ms, ``json`` ~18 ms).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from config.errors import StoreError
from config.gcpause import collector_paused
from config.signals import Quality

from ..batch import I64, TS_UNKNOWN, Series
from .lp import HIERARCHY

__all__ = ["Body", "Rows", "int_column", "join", "msgpack_docs", "parse_chunked", "parse_grouped",
           "parse_series", "path_filter", "quote_ident", "quote_str", "series_of"]


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def path_filter(path: str) -> str:
    """WHERE condition selecting by the hierarchy tags of ``path``: a tag's series (site/area/
    line/asset/signal; not by role or device, so a tag whose role or device changed is still
    one signal), or an asset's (site/area/line/asset)."""
    segments = path.split("/")
    return " AND ".join(f"{quote_ident(k)} = {quote_str(v)}"
                        for k, v in zip(HIERARCHY[:len(segments)], segments, strict=True))


@dataclass(slots=True)
class Rows:
    """One statement's result: its columns and rows (lists as JSON decoded them)."""

    columns: list[str]
    values: list[list[Any]]

    def column(self, name: str) -> list[Any]:
        if not self.values:
            return []
        try:
            k = self.columns.index(name)
        except ValueError:  # a field never written in this window is not a column at all
            return [None] * len(self.values)
        return [row[k] for row in self.values]


#: an answer as the parsers take it: its JSON text, or its parts as they arrive -- JSON lines,
#: or documents already decoded (a MessagePack answer, ``msgpack_docs``)
Body = str | Iterable[str | dict[str, Any]]


def msgpack_docs(chunks: Iterable[bytes], where: str) -> Iterator[dict[str, Any]]:
    """The documents of a MessagePack ``/query`` answer (``Accept: application/x-msgpack``,
    InfluxDB 1.x: the JSON answer's structure, one document per chunk of a chunked answer),
    decoded as the bytes arrive, the garbage collector off while each is (as ``_results``)."""
    import msgpack  # only called once the server answered MessagePack (``InfluxStore``)

    unpacker = msgpack.Unpacker(raw=False)
    for chunk in chunks:
        unpacker.feed(chunk)
        try:
            with collector_paused():
                docs = list(unpacker)
        except ValueError as exc:  # msgpack's decoding errors are ValueErrors
            raise StoreError(f"{where}: answer is not MessagePack: {exc}") from exc
        for doc in docs:
            if not isinstance(doc, dict):
                raise StoreError(f"{where}: answer is not a MessagePack map: {str(doc)[:200]!r}")
            yield doc


def _results(body: Body, statements: int, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(statement index, series object) of each series part of a (chunked or not) ``/query``
    answer (its text, or its lines or decoded documents as they arrive), in order; a
    statement error is a StoreError carrying the server's message.

    The garbage collector is off while a line is decoded and its series handled (the
    consumer converts them while this waits at ``yield``): a chunk of 50,000 samples is
    50,000 new lists, and the collections their allocation sets off scan everything the
    process holds (a week of the demo plant's samples took seconds to decode with it on,
    ~0.1 s off). Converted (``parse_series``), the lists are freed by reference counting
    before it is on again (no cycle among them)."""
    for line in body.splitlines() if isinstance(body, str) else body:
        if isinstance(line, str) and not line.strip():
            continue
        with collector_paused():
            if isinstance(line, dict):
                doc = line
            else:
                try:
                    doc = orjson.loads(line)
                except ValueError as exc:  # orjson.JSONDecodeError is one
                    raise StoreError(f"{where}: answer is not JSON: {line[:200]!r}") from exc
            if "error" in doc:
                raise StoreError(f"{where}: {doc['error']}")
            for result in doc.get("results", ()):
                k = int(result.get("statement_id", 0))
                if "error" in result:
                    raise StoreError(f"{where}: statement {k}: {result['error']}")
                if not 0 <= k < statements:
                    raise StoreError(f"{where}: answer names statement {k} of {statements}")
                for series in result.get("series", ()):
                    yield k, series
            del doc


def _extend(rows: Rows, series: dict[str, Any]) -> None:
    cols = list(series.get("columns", ()))
    if rows.columns and cols != rows.columns:
        # chunks of one statement share columns; re-order defensively if not
        idx = [cols.index(c) if c in cols else None for c in rows.columns]
        rows.values.extend([[v[i] if i is not None else None for i in idx] for v in series["values"]])
    else:
        rows.columns = rows.columns or cols
        rows.values.extend(series.get("values", ()))


def parse_chunked(body: Body, statements: int, where: str) -> list[Rows]:
    """``statements`` results from a (chunked or not) ``/query`` answer; a statement error is a
    StoreError carrying the server's message."""
    out = [Rows([], []) for _ in range(statements)]
    for k, series in _results(body, statements, where):
        _extend(out[k], series)
    return out


def parse_grouped(body: Body, statements: int, where: str, tag: str
                  ) -> list[dict[str, Rows]]:
    """Of each of ``statements`` (each ``GROUP BY`` ``tag``): tag value -> its rows. The parts
    of a group a chunked answer splits are joined; a group without rows is absent."""
    out: list[dict[str, Rows]] = [{} for _ in range(statements)]
    for k, series in _results(body, statements, where):
        value = (series.get("tags") or {}).get(tag)
        if value is None:
            raise StoreError(f"{where}: statement {k}: a series without the tag {tag!r}")
        _extend(out[k].setdefault(str(value), Rows([], [])), series)
    return out


def parse_series(body: Body, statements: int, where: str, tag: str
                 ) -> list[dict[str, Series]]:
    """``parse_grouped`` of statements of columns time, value, quality, each group as a
    Series. Each part is converted as soon as it is decoded: lists of a read's every sample
    held at once (300k for a week of the demo plant's tags) made the garbage collector's
    full passes cost more than the reading itself (seconds)."""
    out: list[dict[str, Series]] = [{} for _ in range(statements)]
    for k, series in _results(body, statements, where):
        value = (series.get("tags") or {}).get(tag)
        if value is None:
            raise StoreError(f"{where}: statement {k}: a series without the tag {tag!r}")
        part = series_of(Rows(list(series.get("columns", ())), series.get("values") or []))
        held = out[k].get(str(value))
        out[k][str(value)] = part if held is None else join(held, part)
    return out


def join(*parts: Series) -> Series:
    """Series one after the other (in time order) as one."""
    parts = tuple(p for p in parts if len(p.ts_ns))
    if not parts:
        return Series.empty()
    if len(parts) == 1:
        return parts[0]
    return Series(np.concatenate([p.ts_ns for p in parts]), np.concatenate([p.value for p in parts]),
                  np.concatenate([p.quality for p in parts]))


_SERIES_COLUMNS = ["time", "value", "quality"]


def _columns(r: Rows) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any]]:
    if r.columns == _SERIES_COLUMNS:
        values = r.values
        return [x[0] for x in values], [x[1] for x in values], [x[2] for x in values]
    return r.column("time"), r.column("value"), r.column("quality")


def series_of(*parts: Rows) -> Series:
    """Rows with columns time, value, quality (several results in time order) as a Series."""
    rows = [r for r in parts if r.values]
    if not rows:
        return Series.empty()
    cols = [_columns(r) for r in rows]
    ts = np.concatenate([np.array(c[0], dtype=np.int64) for c in cols])
    # None (no value field: a text or non-finite sample) becomes NaN in the float conversion
    value = np.concatenate([np.array(c[1], dtype=np.float64) for c in cols])
    # a missing quality (written by something else than tierproof) counts as unusable
    q = np.concatenate([np.array(c[2], dtype=np.float64) for c in cols])
    q[np.isnan(q)] = Quality.BAD
    return Series(ts, value, q.astype(np.uint8))


def int_column(rows: Rows, name: str) -> I64:
    """An integer column (time, server_ts, gateway_ts); TS_UNKNOWN where the field is absent."""
    return np.fromiter((TS_UNKNOWN if v is None else v for v in rows.column(name)),
                       dtype=np.int64, count=len(rows.values))
