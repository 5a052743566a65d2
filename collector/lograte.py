"""Log lines about bad input that neither flood nor go silent.

A device or a broker can send the same bad input thousands of times a second, or bad input
on thousands of distinct topics. Logging every occurrence floods the log (and the disk);
logging each (place, reason) once and then nothing hides that the problem goes on, and a
fixed set of logged pairs goes silent for good once it is full. :class:`LogLimiter` keeps
the middle ground, per *key* = (where, reason):

* the first occurrence of a key is logged in full, at once;
* further occurrences are counted, and at the end of each interval (60 s) one summary line
  per key says ``N more of <reason> on <where> in the last 60 s``: at most
  ``summary_lines`` such lines, the rest in one line for all the other keys;
* a reason not yet logged in the current interval is always logged in full at once, even
  when the key is new only because of its place; a known reason at a new place is logged in
  full up to ``burst`` times per interval, beyond that counted in the summary;
* memory is bounded: at most ``max_keys`` keys are remembered (the least recently seen is
  forgotten first, its pending count moving to the "other" summary line). A forgotten key
  seen again is new again: nothing ever becomes silent.

So one interval logs at most (distinct reasons) + ``burst`` full lines and
``summary_lines`` + 1 summary lines, whatever the input. Summaries are written when a call
comes after the interval has passed, by :meth:`tick` (call it from a loop that runs anyway),
and by :meth:`flush` (call it when the source closes, so that nothing counted is left
unsaid).

Counting what was dropped is not this class's job: the counters in the collector status
(``dropped``, ``tag_errors``) count every occurrence; the log says what and where.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

__all__ = ["LogLimiter"]

#: seconds per summary interval
INTERVAL_S: Final = 60.0
#: (where, reason) keys remembered at most
MAX_KEYS: Final = 1000
#: full lines per interval for known reasons at new places (a reason new in the interval is
#: logged regardless)
BURST: Final = 20
#: per-key summary lines per interval at most; the other keys share one line
SUMMARY_LINES: Final = 10
#: characters of a ``where`` or ``reason`` in a summary line
_SHOW: Final = 200


def _show(text: str) -> str:
    return text if len(text) <= _SHOW else text[:_SHOW - 3] + "..."


class LogLimiter:
    """Rate-limits one source's log lines per (where, reason); see the module doc.

    ``name`` prefixes the summary lines (a device's name); ``level`` is their level and the
    level of :meth:`log`. ``clock`` (seconds, monotonic) exists for tests of the interval.
    """

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        *,
        level: int = logging.WARNING,
        interval_s: float = INTERVAL_S,
        max_keys: int = MAX_KEYS,
        burst: int = BURST,
        summary_lines: int = SUMMARY_LINES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1 or interval_s <= 0:
            raise ValueError("LogLimiter needs max_keys >= 1 and interval_s > 0")
        self.logger = logger
        self.name = name
        self.level = level
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.burst = burst
        self.summary_lines = summary_lines
        self._clock = clock
        #: keys seen, least recently seen first -> occurrences not logged in this interval
        self._keys: OrderedDict[tuple[str, str], int] = OrderedDict()
        #: reasons logged in full in this interval (bounded by max_keys too)
        self._reasons: set[str] = set()
        self._full = 0  # full lines of known reasons at new places in this interval
        self._other = 0  # occurrences of forgotten keys in this interval
        self._other_keys = 0
        self._pending = 0  # occurrences counted and not yet summarised
        self._since = clock()
        #: lines written in full / summary lines / occurrences only counted, since creation
        self.logged = 0
        self.summaries = 0
        self.suppressed = 0

    # ------------------------------------------------------------------ use

    def admit(self, where: str, reason: str) -> bool:
        """Count one occurrence; True if the caller should log it in full now."""
        now = self._clock()
        if now - self._since >= self.interval_s:
            self._summarise(now)
        key = (where, reason)
        keys = self._keys
        if key in keys:
            keys.move_to_end(key)
            keys[key] += 1
            self.suppressed += 1
            self._pending += 1
            return False
        if len(keys) >= self.max_keys:
            _, pending = keys.popitem(last=False)
            if pending:
                self._other += pending
                self._other_keys += 1
        if reason not in self._reasons and len(self._reasons) < self.max_keys:
            self._reasons.add(reason)
        elif self._full < self.burst:
            self._full += 1
        else:
            keys[key] = 1  # remembered: its occurrences are summarised from now on
            self.suppressed += 1
            self._pending += 1
            return False
        keys[key] = 0
        self.logged += 1
        return True

    def log(self, where: str, reason: str, msg: str, *args: Any) -> bool:
        """``logger.log(level, msg, *args)`` if :meth:`admit` says so; returns whether it was."""
        if self.admit(where, reason):
            self.logger.log(self.level, msg, *args)
            return True
        return False

    def tick(self) -> None:
        """Write the summaries if the interval has passed (cheap: call it often)."""
        now = self._clock()
        if now - self._since >= self.interval_s:
            self._summarise(now)

    def due_in(self) -> float | None:
        """Seconds until the next summary is due, None when nothing waits to be summarised
        (a source that sleeps until its next message can sleep at most this long)."""
        if not self._pending:
            return None
        return max(0.0, self._since + self.interval_s - self._clock())

    def flush(self) -> None:
        """Write the summaries of the interval so far (the source is closing)."""
        self._summarise(self._clock())

    # ------------------------------------------------------------------ summaries

    def _summarise(self, now: float) -> None:
        span = max(0.0, now - self._since)
        pending = [(n, k) for k, n in self._keys.items() if n]
        pending.sort(key=lambda p: -p[0])
        shown, rest = pending[:self.summary_lines], pending[self.summary_lines:]
        for n, (where, reason) in shown:
            self.logger.log(self.level, "%s: %d more of %s on %s in the last %.0f s",
                            self.name, n, _show(reason), _show(where), span)
            self.summaries += 1
        other = self._other + sum(n for n, _ in rest)
        other_keys = self._other_keys + len(rest)
        if other:
            example = rest[0][1] if rest else None
            self.logger.log(
                self.level, "%s: %d more of %d other (place, reason) pairs in the last %.0f s%s",
                self.name, other, other_keys, span,
                f" (e.g. {_show(example[1])} on {_show(example[0])})" if example else "",
            )
            self.summaries += 1
        for k in self._keys:
            self._keys[k] = 0
        self._reasons.clear()
        self._full = self._other = self._other_keys = self._pending = 0
        self._since = now
