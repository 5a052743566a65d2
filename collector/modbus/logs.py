"""pymodbus's log lines about malformed frames, made short and rate-limited.

pymodbus logs each frame it cannot use at ERROR with a hex dump of the last frames appended
(``>>>>> send: 0x0 0x1 ...``), and a frame it cannot decode ends in asyncio's "Fatal error:
protocol.data_received() call failed" with a traceback. A device (or a noisy line) sending bad
frames continuously turns that into a flood of multi-line records. :func:`install` puts a
filter on both loggers that makes each such record one line naming the Modbus line it came
from, drops the traceback, keeps the hex dump only at DEBUG (on ``tierproof.collector.modbus``,
truncated to :data:`HEX_MAX` characters) and passes the line through a
:class:`~collector.lograte.LogLimiter` (the first of each reason in full, then one summary
line per minute).

The line a record comes from is known through a context variable that
:meth:`~collector.modbus.line.ModbusLine.open` sets before connecting: pymodbus's callbacks,
and the poll tasks that log pymodbus's "no response" errors, run in a copy of that context.
"""

from __future__ import annotations

import contextvars
import logging
import re
from typing import Final

from ..lograte import LogLimiter

__all__ = ["HEX_MAX", "LINE", "flush", "install", "tick"]

log = logging.getLogger("tierproof.collector.modbus")

#: the Modbus line (``host:port``, serial port) whose pymodbus client is logging
LINE: contextvars.ContextVar[str] = contextvars.ContextVar("tierproof_modbus_line", default="modbus")
#: characters of a hex dump logged (at DEBUG only)
HEX_MAX: Final = 256
#: a one-line message's length at most
_LINE_MAX: Final = 300
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+")
_FATAL = "Fatal error: protocol.data_received() call failed."
#: pymodbus's records of a failed connect, which ModbusLine.open's ConnectError says in one
#: sentence with the device's name (and the supervisor logs), and its "Repeating...." marker
#: of a repeated record (this module rate-limits repeats itself): kept at DEBUG
_SAID_BY_US: Final = ("Failed to connect", "Repeating")

_limiter = LogLimiter(log, "modbus")


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


class _PymodbusFilter(logging.Filter):
    """On ``pymodbus.logging``: one line per record, hex at DEBUG, rate-limited per reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record we cannot format: let logging report it as it would
            return True
        head, _, frames = text.partition("\n")
        where = LINE.get()
        if frames and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: pymodbus frames: %s", where, _clip(frames.strip(), HEX_MAX))
        if record.levelno < logging.INFO:
            # pymodbus's own debug lines (hex of every frame): asked for, but truncated
            record.msg, record.args = _clip(text, HEX_MAX), None
            return True
        record.msg, record.args = f"{where}: pymodbus: {_clip(head.strip(), _LINE_MAX)}", None
        record.exc_info = record.exc_text = None
        if head.startswith(_SAID_BY_US):
            # the supervisor's line says it once, naming the device: this one only at DEBUG
            if not log.isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return True
        # the key: the message without its numbers (transaction ids, byte values)
        return _limiter.admit(where, _NUMBER.sub("N", head)[:_LINE_MAX])


class _AsyncioFilter(logging.Filter):
    """On ``asyncio``: a pymodbus protocol that failed to decode an answer (the connection is
    closed and the collector reconnects) is one rate-limited line, its traceback at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not isinstance(msg, str) or not msg.startswith(_FATAL) or "pymodbus" not in msg:
            return True
        where = LINE.get()
        exc = record.exc_info[1] if record.exc_info else None
        why = _clip(str(exc) or type(exc).__name__, _LINE_MAX) if exc is not None else "?"
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: undecodable Modbus answer", where, exc_info=record.exc_info)
        record.msg = f"{where}: undecodable Modbus answer, connection closed: {why}"
        record.args = None
        record.exc_info = record.exc_text = None
        return _limiter.admit(where, "undecodable answer: " + _NUMBER.sub("N", why))


_installed = False


def install() -> None:
    """Install the filters (once; called when the first Modbus line is made)."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger("pymodbus.logging").addFilter(_PymodbusFilter())
    logging.getLogger("asyncio").addFilter(_AsyncioFilter())


def tick() -> None:
    """Write the summaries once the interval has passed (a Modbus collector's loop calls it)."""
    _limiter.tick()


def flush() -> None:
    """Write the pending summaries now."""
    _limiter.flush()
