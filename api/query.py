"""One value per single-valued query parameter: ``?asset=a&asset=b`` for a parameter that
takes one asset is refused (422, naming it), not answered for whichever value FastAPI keeps
(the last): a client that meant both would get an answer for one, silently."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

__all__ = ["single_valued_query"]


def _single(dependant: Any, out: set[str]) -> set[str]:
    from fastapi._compat import field_annotation_is_sequence

    for p in getattr(dependant, "query_params", ()):
        if not field_annotation_is_sequence(p.field_info.annotation):
            out.add(p.alias)
    for sub in getattr(dependant, "dependencies", ()):
        _single(sub, out)
    return out


async def single_valued_query(request: Request) -> None:
    """An app-wide dependency: a single-valued query parameter given twice is a 422. A
    coroutine that never waits: run inline, not handed to the thread pool (``api.deps``)."""
    if not request.scope.get("query_string"):  # not request.url: building it costs more
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names: frozenset[str] | None = getattr(route, "_single_valued_query", None)
    if names is None:  # once per route
        names = frozenset(_single(dependant, set()))
        route._single_valued_query = names  # type: ignore[union-attr]
    seen = Counter(k for k, _ in request.query_params.multi_items() if k in names)
    twice = [k for k, n in seen.items() if n > 1]
    if twice:
        raise RequestValidationError([
            {"loc": ("query", k), "msg": f"given {seen[k]} times; this parameter takes one value",
             "type": "value_error"} for k in sorted(twice)])
