"""``tierproof evidence`` and ``tierproof verify`` (wired into ``api.cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "evidence", "verify"]


def add_parsers(sub: Any) -> None:
    """The two commands' parsers on the CLI's subparsers."""
    e = sub.add_parser(
        "evidence", help="write a signed evidence pack of the tier assessment",
        description="Assess the stored data (as tierproof assess) and write into a new directory "
        "the assessment, every input it was computed from (hourly time elements, raw samples, "
        "state timeline, gaps, planned busy time), the configuration (secrets redacted), the "
        "declared items with their audit trail, and a manifest of SHA-256 hashes signed with "
        "the gateway's Ed25519 key (<data dir>/evidence_key.pem, made on first use). See "
        "docs/evidence.md.")
    e.add_argument("--config", required=True, help="the gateway's configuration file")
    e.add_argument("--out", help="directory to write the pack into (new or empty)")
    e.add_argument("--tier", help="one tier (default: every tier)")
    e.add_argument("--from", dest="from_", help="current window start (ISO 8601 or now-7d)")
    e.add_argument("--to", help="current window end (ISO 8601 or now)")
    e.add_argument("--baseline-from", help="baseline window start")
    e.add_argument("--baseline-to", help="baseline window end")
    e.add_argument("--print-public-key", action="store_true",
                   help="print the gateway's public key (PEM; made on first use) and exit: give "
                   "it to the auditor, who passes it to tierproof verify --public-key")
    v = sub.add_parser(
        "verify", help="verify an evidence pack from the pack alone",
        description="Check the manifest's signature and every file's SHA-256, then recompute "
        "the hourly time elements from the raw samples and the assessment's KPIs, deltas, "
        "intervals and verdicts, and compare them with the pack's. Exit 0 with a summary, or 1 "
        "naming the first mismatch (file, row or field, expected vs found).")
    v.add_argument("pack", metavar="DIR", help="the pack's directory (unzip a downloaded pack first)")
    v.add_argument("--public-key", type=Path, metavar="FILE",
                   help="the gateway's public key (PEM): the pack must be signed by it")


def evidence(args: argparse.Namespace) -> int:
    from config.errors import KpiError
    from config.loader import load_settings
    from store import open_store

    from ..declared import DeclaredEvidence
    from ..service import KpiService
    from .keys import key_path, load_or_create_key, public_pem
    from .pack import write_pack

    base = load_settings(args.config)
    key = load_or_create_key(key_path(base))
    if args.print_public_key:
        sys.stdout.write(public_pem(key.public_key()).decode())
        return 0
    if not args.out:
        raise KpiError("tierproof evidence needs --out DIR (or --print-public-key)")
    with DeclaredEvidence.open(base) as declared:
        settings = declared.settings
        store = open_store(settings.store)  # read only: nothing registered, nothing collected
        try:
            if not settings.devices and callable(getattr(store, "discover_tags", None)):
                store.discover_tags([a.path for a in settings.assets])  # type: ignore[attr-defined]
            service = KpiService(settings, store, declared_versions=declared.versions())
            manifest = write_pack(Path(args.out), settings, service, key, declared=declared,
                                  tier=args.tier, from_=args.from_, to=args.to,
                                  baseline_from=args.baseline_from, baseline_to=args.baseline_to)
        finally:
            store.close()
    print(f"evidence pack written to {args.out}: {len(manifest['files'])} files, signed by "
          f"Ed25519 key {manifest['public_key']}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from .verify import verify_pack

    report = verify_pack(Path(args.pack), args.public_key)
    print(f"OK: {args.pack} verifies")
    print(report)
    return 0
