"""``config.gcpause.collector_paused`` (an assessment, an InfluxDB answer being decoded): the
cyclic garbage collector is off inside the block and back as it was after it -- on when it was
on, off when the process had turned it off -- also when the block raises."""

from __future__ import annotations

import gc

import pytest

from config.gcpause import collector_paused


def test_the_collector_is_off_inside_and_as_it_was_after() -> None:
    was = gc.isenabled()
    try:
        gc.enable()
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("boom")
        assert gc.isenabled()
        gc.disable()  # turned off by the process: left off
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()
