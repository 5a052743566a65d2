"""Docker's HEALTHCHECK of the gateway: ``python -m api.healthcheck URL``.

Exit 0 (alive) when ``/api/v1/health`` answers 200 (``ok``) or 503 (``degraded``) with its
health document within the timeout, 1 otherwise. Degraded is alive on purpose: a gateway that
keeps collecting into its spool while InfluxDB is down, or while one device is unreachable, must
not be restarted by an orchestrator (a restart cannot fix either, and would interrupt the other
devices' collection); a load balancer or monitor reads the 503 itself. What a restart can fix,
an API that no longer answers, fails the check. The reasons of a degraded answer are printed,
so that ``docker inspect`` shows them.

With ``api.tls`` the URL is ``https://127.0.0.1:PORT/api/v1/health``: on a loopback address the
certificate is not verified (the check asks whether this container's own gateway answers; a
certificate made for the plant's host name would not match 127.0.0.1). Any other host is
verified as usual.

Standard library only, so the check starts fast and needs nothing the image lacks.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 4.0


def _context(url: str) -> ssl.SSLContext | None:
    """No certificate check for HTTPS to a loopback address (the module docstring); else
    urllib's default."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        return None
    try:
        loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check(url: str, timeout: float = TIMEOUT_S) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=_context(url)) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        if exc.code != 503:
            print(f"health answered {exc.code}")
            return 1
        body = exc.read()
    except (OSError, ValueError) as exc:
        print(f"health did not answer: {exc}")
        return 1
    try:
        doc = json.loads(body)
    except ValueError:
        print("health answered something that is not its JSON document")
        return 1
    for r in doc.get("reasons", []):
        print(f"degraded: {r.get('part')} {r.get('name')}: {r.get('reason')}")
    return 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/api/v1/health"))
