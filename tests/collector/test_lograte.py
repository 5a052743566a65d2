"""collector.lograte.LogLimiter: the first of each (where, reason) in full, one summary line per
key and interval, new reasons always logged, bounded memory and bounded lines per interval.

The limiter is pure bookkeeping around a logger; the clock is a number the test moves (the
interval is 60 s of real time otherwise). The broker and Modbus tests use it for real."""

from __future__ import annotations

import logging

import pytest

from collector.lograte import LogLimiter

LOGGER = "tierproof.test.lograte"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def limiter(clock: Clock, **kw: object) -> LogLimiter:
    return LogLimiter(logging.getLogger(LOGGER), "dev", clock=clock, **kw)  # type: ignore[arg-type]


def test_first_in_full_then_one_summary_per_interval(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    lim = limiter(clock)
    for _ in range(1000):
        lim.log("'t/1'", "wrong type", "full line about %s", "t/1")
    assert lines(caplog) == ["full line about t/1"]
    clock.t += 59.0
    lim.tick()
    assert len(lines(caplog)) == 1  # not before the interval is over
    clock.t += 1.0
    lim.log("'t/1'", "wrong type", "full line about %s", "t/1")  # the call that ends it
    assert lines(caplog)[1:] == ["dev: 999 more of wrong type on 't/1' in the last 60 s"]
    clock.t += 60.0
    lim.tick()  # the one occurrence counted in the second interval
    assert lines(caplog)[2:] == ["dev: 1 more of wrong type on 't/1' in the last 60 s"]
    assert lim.due_in() is None  # nothing waits to be said
    lim.log("'t/1'", "wrong type", "full line about %s", "t/1")
    clock.t += 45.0
    assert lim.due_in() == 15.0  # a source idle until its next message wakes up for it
    clock.t += 15.0
    lim.tick()  # the one occurrence counted in the third interval
    assert lines(caplog)[3:] == ["dev: 1 more of wrong type on 't/1' in the last 60 s"]
    clock.t += 60.0
    lim.tick()  # nothing counted: nothing said
    assert len(lines(caplog)) == 4
    assert (lim.logged, lim.summaries, lim.suppressed) == (1, 3, 1001)


def test_ten_thousand_pairs_leave_new_reasons_logged_and_summarised(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    lim = limiter(clock, max_keys=1000, burst=20, summary_lines=10)
    for k in range(12_000):
        lim.log(f"'t/{k}'", "unknown topic", "unknown %d", k)
    full = lines(caplog)
    # the reason once, then the burst of 20 for new places; the rest counted
    assert full == [f"unknown {k}" for k in range(21)]
    assert len(lim._keys) == 1000  # memory bounded
    # a new reason after them is logged at once, in full
    assert lim.log("'js/1'", "malformed json", "bad json on js/1")
    assert lines(caplog)[-1] == "bad json on js/1"
    lim.flush()
    summary = lines(caplog)[22:]
    assert len(summary) <= 11  # 10 per-key lines and one for all the others
    assert summary[-1].startswith("dev: ") and "other (place, reason) pairs" in summary[-1]
    counted = sum(int(s.split()[1]) for s in summary)
    assert counted == 12_000 - 21  # every occurrence not logged in full is in a summary
    # the next interval: the reason is new in it, so logged in full again at a new place
    clock.t += 60
    assert lim.log("'t/new'", "unknown topic", "unknown new")


def test_a_forgotten_key_is_logged_again_never_silent(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    lim = limiter(clock, max_keys=2, burst=100)
    for where in ("a", "b", "c"):  # "a" is forgotten when "c" comes
        lim.log(where, "r", "r on %s", where)
    assert lim.log("a", "r", "r on %s", "a")
    assert lines(caplog) == ["r on a", "r on b", "r on c", "r on a"]


def test_lines_per_interval_are_bounded_whatever_the_input(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    lim = limiter(clock, max_keys=100, burst=5, summary_lines=3)
    for interval in range(5):
        before = len(lines(caplog))
        for k in range(2000):
            lim.log(f"w{k % 300}", f"reason {k % 4}", "x")
        clock.t += 60
        lim.tick()
        # 4 reasons + 5 burst full lines, 3 key summaries + 1 "other" line
        assert len(lines(caplog)) - before <= 4 + 5 + 3 + 1, interval


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        LogLimiter(logging.getLogger(LOGGER), "dev", max_keys=0)
