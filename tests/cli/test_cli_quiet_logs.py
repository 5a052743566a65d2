"""The CLI's logging setup: library loggers that log every request at INFO are quiet."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli import main

NOISY = ("httpx", "httpcore", "pymodbus", "asyncua")


@pytest.fixture
def restore_levels() -> Iterator[None]:
    saved = {n: logging.getLogger(n).level for n in NOISY}
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def test_httpx_requests_are_not_logged_at_info(tmp_path: Path, restore_levels: None) -> None:
    for n in NOISY:
        logging.getLogger(n).setLevel(logging.NOTSET)
    # any command sets up logging; a missing config file is a quick one
    assert main(["--log-level", "INFO", "check-config", "--config", str(tmp_path / "no.yaml")]) != 0
    httpx = logging.getLogger("httpx")
    # httpx logs each request as 'HTTP Request: POST ... "HTTP/1.1 204 No Content"' at INFO
    for n in NOISY:
        assert logging.getLogger(n).level == logging.WARNING, n
    assert not httpx.isEnabledFor(logging.INFO) and httpx.isEnabledFor(logging.WARNING)
