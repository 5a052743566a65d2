"""FastAPI app (composition root), the running gateway, the KPI service and the CLI.

The names below are imported on first use (PEP 562): a process that needs only the KPI
side -- an assessment worker (``api.assetsplit``) imports ``api.assessment`` and
``api.service`` -- does not import the app, the collectors and their protocol stacks
(~1 s and ~60 MB)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .gateway import Gateway, tag_records
    from .service import KpiService

__all__ = ["Gateway", "KpiService", "create_app", "tag_records"]

_WHERE = {"create_app": ".app", "Gateway": ".gateway", "tag_records": ".gateway",
          "KpiService": ".service"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
