"""Store-and-forward: a durable on-disk queue of batches (:class:`Spool`) in front of a remote
store while it cannot take them, the quarantine of batches it refused for good, and what the
``tierproof spool`` commands do with both."""

from .admin import (
    ReplayOutcome,
    SpoolAdmin,
    SpoolListing,
    drop_quarantined,
    list_spool,
    replay_quarantined,
    spool_settings,
)
from .codec import decode_batch, encode_batch
from .quarantine import Quarantine, QuarantineEntry, QuarantineStats, open_quarantine
from .queue import AppendResult, Spool, SpoolEntry, SpoolStats, WhenFull
from .store import SpooledStore, backoff_delay, open_spool, spool_problems

__all__ = [
    "AppendResult",
    "Quarantine",
    "QuarantineEntry",
    "QuarantineStats",
    "ReplayOutcome",
    "Spool",
    "SpoolAdmin",
    "SpoolEntry",
    "SpoolListing",
    "SpoolStats",
    "SpooledStore",
    "WhenFull",
    "backoff_delay",
    "decode_batch",
    "drop_quarantined",
    "encode_batch",
    "list_spool",
    "open_quarantine",
    "open_spool",
    "replay_quarantined",
    "spool_problems",
    "spool_settings",
]
