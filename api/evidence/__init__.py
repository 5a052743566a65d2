"""Evidence packs: a signed bundle of a tier assessment and everything it was computed from
(``pack``), and their verification from the pack alone (``verify``); ``docs/evidence.md``."""

from __future__ import annotations

from .keys import EvidenceKeyError, key_path, load_or_create_key, public_pem
from .pack import evidence_zip, write_pack
from .verify import Mismatch, verify_pack

__all__ = ["EvidenceKeyError", "Mismatch", "evidence_zip", "key_path", "load_or_create_key",
           "public_pem", "verify_pack", "write_pack"]
