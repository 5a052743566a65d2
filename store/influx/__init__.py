"""InfluxDB as the store (v1 ``/write`` or the v2 write API; InfluxQL reads over ``/query``):
the :class:`InfluxStore`, the line protocol it writes, the InfluxQL it reads with, and the
sink that posts to the server. ``store/influx/SCHEMA.md`` documents what is stored."""

from .lp import HIERARCHY, LineEncoder, UnknownTags, gap_line, series_key
from .sink import Sink, gzip_body, make_sink
from .store import InfluxStore

__all__ = [
    "HIERARCHY",
    "InfluxStore",
    "LineEncoder",
    "Sink",
    "UnknownTags",
    "gap_line",
    "gzip_body",
    "make_sink",
    "series_key",
]
