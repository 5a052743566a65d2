"""The latest sample of many tags in one answer (``GET /api/v1/tags/latest``): what a
dashboard refresh needs for every machine's state and mode, instead of one request per tag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import TypeAdapter

from config.errors import NotFoundError
from config.times import iso

from ..deps import GatewayDep
from ..models import LatestOut
from ..plant_time import ZonesDep
from ..problems import echo
from ..state_names import names_of
from .plant import _num, quality_name

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["tags"])
#: the answer encoded once, not validated again against the models it was built from (every
#: tag of a 100-machine plant is 1,266 entries)
_ANSWER = TypeAdapter(list[LatestOut])


@router.get(
    "/tags/latest", response_model=list[LatestOut],
    summary="Latest sample of every tag of a selection, in one answer",
    description=(
        "The latest sample of each tag (as `GET /api/v1/tags/{path}/latest` answers it) of "
        "the selection: an asset's tags (`asset`), the tags under a path (`prefix`: a site, "
        "area, line or asset path), of one `role` (e.g. `state`), or every tag; in the order "
        "of `GET /api/v1/tags`. One read of the store for all of them. An `asset` or `prefix` "
        "that selects no tag is a 404 problem; a tag with no sample yet is listed with "
        "`quality` \"no data\"."
    ),
)
def get_tags_latest(
    g: GatewayDep,
    zones: ZonesDep,
    asset: Annotated[str | None, Query(description="only this asset's tags",
                                       examples=["demo/machining/line1/lathe-01"])] = None,
    prefix: Annotated[str | None, Query(
        description="only the tags whose path starts with this path (a whole path segment)",
        examples=["demo/machining/line1"])] = None,
    role: Annotated[str | None, Query(description="only tags of this role",
                                      examples=["state"])] = None,
) -> Response:
    under = None if prefix is None else prefix.rstrip("/") + "/"
    tags = [t for t in g.tags.all()
            if (asset is None or t.asset == asset)
            and (under is None or t.path.startswith(under))
            and (role is None or t.role == role)]
    if not tags and (asset is not None or prefix is not None):
        which = f"asset {echo(asset)}" if asset is not None else f"prefix {echo(prefix)}"
        raise NotFoundError(f"no tag under {which}; GET /api/v1/assets lists the assets")
    got = g.store.latest([t.tag_id for t in tags])
    out = []
    for t in tags:
        s = got.get(t.tag_id)
        if s is None:
            out.append(LatestOut(path=t.path, ts=None, value=None, quality="no data"))
            continue
        value = _num(s.value)
        out.append(LatestOut(path=t.path, ts=iso(s.ts_ns, tz=zones.output), value=value,
                             name=(names_of(t, [value]) or [None])[0], text=s.text,
                             quality=quality_name(s.quality)))
    return Response(_ANSWER.dump_json(out), media_type="application/json")
