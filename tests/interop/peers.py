"""Start a third-party peer (a Node.js script under tests/interop/node) as a subprocess.

Each script prints one line ``READY {json}`` on stdout when it serves (the JSON says where,
e.g. its endpoint or port), then keeps running until killed; it may read commands from stdin
(one JSON object a line) and answer them on stdout with ``{"ok": ...}`` lines. A peer that
exits or stays silent fails the test with its output: a missing Node.js package is a
failure, never a skip (``make test`` installs them with ``npm ci``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"


class PeerFailed(AssertionError):
    pass


class NodePeer:
    """One running ``node tests/interop/node/<script>`` process."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None,
                 node_args: tuple[str, ...] = ()) -> None:
        self.script = script
        self.args = args
        self.env = env or {}
        self.node_args = node_args
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log: list[str] = []

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        if not (NODE_DIR / "node_modules").is_dir():
            raise PeerFailed(f"{NODE_DIR}/node_modules is missing: run `make interop-deps` "
                             "(make test does it)")
        self.proc = subprocess.Popen(
            ["node", *self.node_args, str(NODE_DIR / self.script), *self.args],
            cwd=NODE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, **self.env}, start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            line = self._next(deadline)
            if line.startswith("READY"):
                self.info = json.loads(line[5:].strip() or "{}")
                return self.info

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self._log.append(line)
            self._lines.put(line)
        self.proc.stdout.close()  # this thread owns it (unclosed: a ResourceWarning, an error)
        self._lines.put(None)

    def _next(self, deadline: float) -> str:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise PeerFailed(f"{self.script}: no answer in time; output:\n{self.output()}") from None
        if line is None:
            code = self.proc.wait() if self.proc is not None else None
            raise PeerFailed(f"{self.script} exited ({code}); output:\n{self.output()}")
        return line

    def command(self, timeout: float = 30.0, **cmd: Any) -> dict[str, Any]:
        """Send one command line; return the next ``{"ok": ...}``/``{"error": ...}`` answer."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            line = self._next(deadline)
            if line.startswith("{"):
                answer: dict[str, Any] = json.loads(line)
                if "error" in answer:
                    raise PeerFailed(f"{self.script}: {cmd} failed: {answer['error']}")
                if "ok" in answer:
                    return answer

    def output(self) -> str:
        return "\n".join(self._log[-200:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def __enter__(self) -> NodePeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
