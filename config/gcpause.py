"""The cyclic garbage collector paused for a block (a small utility shared by the packages).

Code that allocates many small objects living until it ends (an InfluxDB answer's decoded
lists, an assessment's rows and parts) sets off collections that scan everything the process
holds; with the collector paused, what the block drops is still freed by reference counting,
and a cycle made meanwhile (by it or by another thread) waits for the first collection after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, on again after it if it was on."""
    collect = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collect:
            gc.enable()
