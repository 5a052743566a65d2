"""FastAPI app (composition root), the running gateway, the KPI service and the CLI."""

from .app import create_app
from .gateway import Gateway, tag_records
from .service import KpiService

__all__ = ["Gateway", "KpiService", "create_app", "tag_records"]
