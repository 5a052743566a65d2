"""A headless Chromium driven over the Chrome DevTools Protocol (websockets, no Playwright
browser download): load a page at a given width, evaluate script in it, and collect every
console error and uncaught exception the page produced. Every host but loopback is blocked."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.helpers import free_port, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.errors: list[str] = []  # console errors and exceptions, as text
        self.requests: list[str] = []  # every URL the page asked for

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return dict(msg.get("result", {}))
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                            for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.errors.append(f"log: {p['entry']['text']} ({p['entry'].get('url', '')})")
        elif method == "Network.requestWillBeSent":
            self.requests.append(p["request"]["url"])

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def hash(self, fragment: str) -> None:
        """Go to another view of the page loaded (its ``#/...`` route), as a click on a link does."""
        self.eval(f"location.hash = {json.dumps(fragment)}")

    def eval(self, expr: str) -> Any:
        got = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in got, got["exceptionDetails"]
        return got["result"].get("value")

    def wait(self, expr: str, timeout: float, what: str) -> Any:
        return wait_for(lambda: self.eval(expr), timeout, what)

    def width(self, px: int, height: int = 900) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=px, height=height, deviceScaleFactor=1,
                  mobile=px < 600)

    def screenshot(self, path: Path, full: bool = False, scale: float = 1.0) -> None:
        """A PNG of the viewport, or of the whole page (``full``: beyond the viewport), at
        ``scale`` (0.5: half the pixels each way, e.g. for a picture in the README)."""
        import base64

        params: dict[str, Any] = {"format": "png"}
        if full or scale != 1.0:
            w, h = self.eval("[document.documentElement.scrollWidth, "
                             + ("document.documentElement.scrollHeight]" if full else "window.innerHeight]"))
            params.update(captureBeyondViewport=full,
                          clip={"x": 0, "y": 0, "width": w, "height": h, "scale": scale})
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))


@contextmanager
def chromium_page(profile: Path, width: int = 1280) -> Iterator[Page]:
    assert CHROMIUM, "chromium is not installed: `make test` installs it (scripts/system-deps.sh)"
    port = free_port()
    proc = subprocess.Popen([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # nothing may leave 127.0.0.1: no CDN, no font or update service
        "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        targets = wait_for(lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                                    if t["type"] == "page"], 60, "Chromium's DevTools endpoint")
        with connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            page = Page(ws)
            for domain in ("Runtime", "Log", "Page", "Network"):
                page.send(f"{domain}.enable")
            page.width(width)
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
