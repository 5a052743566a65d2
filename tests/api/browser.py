"""A headless Chromium driven by Playwright (its Python sync API): load a page at a given width,
evaluate script in it, wait for a condition, take screenshots and PDFs, and collect every
console error and uncaught exception the page produced. Every host but loopback is blocked,
and every request is recorded.

The browser is Debian's Chromium (``/usr/bin/chromium``, installed by `make test`, see
scripts/system-deps.sh), launched with ``executable_path``: Playwright's own browser download
(``playwright install``) is never used, so the tests need no network beyond the package
registries. Each ``chromium_page`` is its own browser with its own profile directory, so tests
stay parallel-safe; nested pages (a fresh profile while a module's page is open) share the
thread's Playwright driver, which the sync API requires."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import CDPSession, ConsoleMessage, Playwright, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page as PlaywrightPage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: hosts a page may reach; everything else is aborted before it leaves the browser
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def local(url: str) -> bool:
    """True for a URL that stays on this machine: loopback, a file, or inline data."""
    parts = urlsplit(url)
    return parts.scheme in ("file", "data", "blob", "about") or parts.hostname in LOOPBACK


class Page:
    def __init__(self, page: PlaywrightPage) -> None:
        self.page = page
        self.errors: list[str] = []  # console errors and exceptions, as text
        self.requests: list[str] = []  # every URL the page asked for
        self._cdp: CDPSession | None = None
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"exception: {exc.stack or exc}"))
        page.on("request", lambda request: self.requests.append(request.url))

    def _console(self, msg: ConsoleMessage) -> None:
        # also the browser's own log of a failed load ("Failed to load resource: net::ERR_...")
        if msg.type in ("error", "assert"):
            where = msg.location.get("url") or ""
            self.errors.append(f"console.{msg.type}: {msg.text}" + (f" ({where})" if where else ""))

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def hash(self, fragment: str) -> None:
        """Go to another view of the page loaded (its ``#/...`` route), as a click on a link does."""
        self.eval(f"location.hash = {json.dumps(fragment)}")

    def eval(self, expr: str) -> Any:
        """The value of the JavaScript expression ``expr`` (a promise is awaited)."""
        return self.page.evaluate(expr)

    def wait(self, expr: str, timeout: float, what: str) -> Any:
        """Wait until ``expr`` is truthy and return its value; fail naming ``what`` and the last
        error. It is retried while it throws (e.g. before the page's script defined what it
        reads, or across a navigation). Polled through ``evaluate``, not ``wait_for_function``:
        the latter evals the condition inside the page, which a Content-Security-Policy without
        'unsafe-eval' (the evidence pack's report.html) refuses."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                got = self.page.evaluate(expr)
                if got:
                    return got
            except PlaywrightError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                     f"last error: {last!r}")
            self.page.wait_for_timeout(250)  # events (console, requests) are handled meanwhile

    def width(self, px: int, height: int = 900) -> None:
        self.page.set_viewport_size({"width": px, "height": height})

    def media(self, kind: str) -> None:
        """Lay the page out for ``print`` or for the ``screen`` again."""
        self.page.emulate_media(media="print" if kind == "print" else "screen")

    def pdf(self) -> bytes:
        """The page printed as Chromium prints it (page size from its CSS, backgrounds on)."""
        return self.page.pdf(prefer_css_page_size=True, print_background=True)

    def screenshot(self, path: Path, full: bool = False, scale: float = 1.0) -> None:
        """A PNG of the viewport, or of the whole page (``full``: beyond the viewport), at
        ``scale`` (0.5: half the pixels each way, e.g. for a picture in the README)."""
        if scale == 1.0:
            self.page.screenshot(path=path, full_page=full)
            return
        # Playwright scales only to CSS or device pixels: any other scale is the DevTools
        # protocol's clip.scale, through Playwright's CDP session
        if self._cdp is None:
            self._cdp = self.page.context.new_cdp_session(self.page)
        w, h = self.eval("[document.documentElement.scrollWidth, "
                         + ("document.documentElement.scrollHeight]" if full else "window.innerHeight]"))
        shot = self._cdp.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": full,
            "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": scale}})
        path.write_bytes(base64.b64decode(shot["data"]))


_driver: list[Playwright] = []  # the thread's Playwright while a page is open (the sync API
_users = [0]                     # allows one per thread: nested pages share it)


@contextmanager
def _playwright() -> Iterator[Playwright]:
    if not _driver:
        _driver.append(sync_playwright().start())
    _users[0] += 1
    try:
        yield _driver[0]
    finally:
        _users[0] -= 1
        if _users[0] == 0:
            # stopped when the last page closes: the sync API's event loop would otherwise
            # stay set on the thread and break later asyncio tests of the same worker
            _driver.pop().stop()


def _route(route: Route) -> None:
    try:
        if local(route.request.url):
            route.continue_()
        else:  # nothing may leave 127.0.0.1: no CDN, no font or update service
            route.abort("blockedbyclient")
    except PlaywrightError:
        pass  # the page went away (navigated, closed) while its request was routed


@contextmanager
def chromium_page(profile: Path, width: int = 1280) -> Iterator[Page]:
    """A fresh headless Chromium with its profile in ``profile``, on about:blank."""
    assert CHROMIUM, "chromium is not installed: `make test` installs it (scripts/system-deps.sh)"
    with _playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": width, "height": 900},
            args=["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-component-update",
                  "--disable-sync",
                  # the browser's own traffic (not seen by routes) cannot leave 127.0.0.1 either
                  "--proxy-server=http://127.0.0.1:9",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        try:
            context.set_default_timeout(120_000)  # a page load on a loaded machine
            context.route("**/*", _route)
            page = Page(context.pages[0] if context.pages else context.new_page())
            yield page
        finally:
            context.close()
