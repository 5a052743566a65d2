"""Declared evidence supplied through the API, overlaid on the configuration (issue 15 item 6).

The **items** (``ITEMS``) are the parts of the configuration that a person or another system
declares rather than telemetry shows: the asset register, the shift calendar and its planned
downtime, and every entry of ``declared:`` (labour hours, operating cost, AI scenarios,
maturity, energy benchmark, emission factor, reference values). ``PUT
/api/v1/declared/{item}`` supplies a new version of one; the registry
(``store.declared.DeclaredRegistry``) keeps every version with who supplied it, when and why.

**Precedence.** Each item's value in force is its latest version supplied through the API, or,
when none was (or the latest went back with ``DELETE``), the configuration file's value --
version 0, ``supplied_by: config``. The settings in force (:func:`effective_settings`) are the
file's with those values in place; the config fingerprint is of them, so it is what
``tierproof check-config`` prints until something is supplied, and changes with every version
in force -- which is what keys every cached KPI result and every hourly roll-up
(``api.rollups.rollup_key`` hashes the calendar and the asset's settings): a calendar or asset
change is a configuration change, and nothing computed under the old one is served again.

**Validation** is the configuration's: the same pydantic models (``config.settings.Asset``,
``config.times.Calendar`` and ``DailyRange``, ``config.declared``) and the same cross-field
checks (``config.settings.cross_check``: every tag's asset must stay in the register), with
errors named by their path in the configuration file (``declared.labour_hours[2].amount``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

from pydantic import TypeAdapter, ValidationError

from config.declared import Declared
from config.settings import Asset, Settings, cross_check
from config.times import Calendar, DailyRange, iso
from store.declared import DeclaredRegistry, DeclaredVersion, declared_path

__all__ = [
    "ITEMS", "DeclaredEvidence", "DeclaredInvalid", "ItemSpec", "config_path", "config_versions",
    "effective_settings",
]

log = logging.getLogger("tierproof.declared")

#: what a version of 0 (the configuration's value) says supplied it
CONFIG: Final = "config"


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """One declared item: where it lives in the configuration and how it is validated."""

    name: str  # as the API names it (path segment)
    path: str  # its field path in the configuration file
    #: its value's type: the configuration's own (the API's answers declare it per item)
    value_type: Any
    #: DeclaredItem entries whose supplied_by/supplied_at the API fills in when absent:
    #: "one" (the value), "list" (each element), "map" (each value), None (no such fields)
    entries: Literal["one", "list", "map"] | None
    #: the item changes what KPI computations and roll-ups rest on (not just the assessment)
    elements: bool
    summary: str
    adapter: TypeAdapter[Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapter", TypeAdapter(self.value_type))


def _declared(name: str) -> Any:
    """The type of the ``declared:`` section's field ``name``."""
    return Declared.model_fields[name].annotation


ITEMS: Final[dict[str, ItemSpec]] = {s.name: s for s in (
    ItemSpec("assets", "assets", list[Asset], None, True,
             "the asset register: every asset with its PRU, control and key-equipment flag"),
    ItemSpec("calendar", "calendar", Calendar, None, True,
             "the shift calendar: time zone, shifts and holidays (planned downtime is its own item)"),
    ItemSpec("planned-downtime", "calendar.planned_stops", list[DailyRange], None, True,
             "planned downtime: the calendar's daily planned stops"),
    ItemSpec("labour-hours", "declared.labour_hours", _declared("labour_hours"), "list", False,
             "labour hours, one figure per calendar month (unit h)"),
    ItemSpec("operating-cost", "declared.operating_cost", _declared("operating_cost"), "list", False,
             "operating cost, one figure per calendar month"),
    ItemSpec("ai-scenarios", "declared.ai_scenarios", _declared("ai_scenarios"), "one", False,
             "the inventory of the factory's scenarios and which apply AI"),
    ItemSpec("maturity", "declared.maturity", _declared("maturity"), "one", False,
             "the GB/T 39116 capability maturity level with its assessor"),
    ItemSpec("energy-benchmark", "declared.energy_benchmark", _declared("energy_benchmark"), "one",
             False, "the industry's energy per standard hour of good output (kWh/standard h)"),
    ItemSpec("emission-factor", "declared.emission_factor", _declared("emission_factor"), "one",
             False, "kg CO2 per kWh, for carbon per unit"),
    ItemSpec("references", "declared.references", _declared("references"), "map", False,
             "named reference values (the province's industry averages the tiers refer to)"),
)}


def config_path(item: str, loc: tuple[int | str, ...] = ()) -> str:
    """``item``'s field path in the configuration, with ``loc`` below it:
    ``declared.labour_hours[2].amount``."""
    out = ITEMS[item].path
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


class DeclaredInvalid(ValueError):
    """A supplied value the configuration's models or checks refuse: (field path, reason)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {r}" for p, r in errors))
        self.errors = errors


def _fill(value: Any, entries: str | None, who: str, today: date) -> Any:
    """``supplied_by`` and ``supplied_at`` where a declared entry leaves them out: the caller
    and the day it supplied the value (``source`` stays required)."""
    def one(v: Any) -> Any:
        if isinstance(v, dict):
            return {"supplied_by": who, "supplied_at": today.isoformat(), **v}
        return v

    if entries == "one":
        return one(value)
    if entries == "list" and isinstance(value, list):
        return [one(v) for v in value]
    if entries == "map" and isinstance(value, dict):
        return {k: one(v) for k, v in value.items()}
    return value


def _errors(item: str, exc: ValidationError) -> list[tuple[str, str]]:
    return [(config_path(item, tuple(e["loc"])), str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()]


def validate(item: str, value: Any, who: str, today: date) -> Any:
    """``value`` of ``item`` validated by the configuration's model: the model object (a
    DeclaredInvalid naming each field path otherwise)."""
    spec = ITEMS[item]
    if item == "calendar" and isinstance(value, dict) and "planned_stops" in value:
        raise DeclaredInvalid([(config_path(item, ("planned_stops",)),
                                "planned downtime is its own item: PUT /api/v1/declared/"
                                "planned-downtime")])
    if value is None:
        raise DeclaredInvalid([(spec.path, "a value is required (DELETE returns the item to the "
                                           "configuration's value)")])
    try:
        got = spec.adapter.validate_python(_fill(value, spec.entries, who, today))
    except ValidationError as exc:
        raise DeclaredInvalid(_errors(item, exc)) from exc
    if spec.path.startswith("declared."):  # the section's own checks (one figure per period)
        field = spec.path.removeprefix("declared.")
        try:
            Declared.model_validate({field: got})
        except ValidationError as exc:
            raise DeclaredInvalid([(spec.path, str(e["msg"]).removeprefix("Value error, ")
                                    .removeprefix(f"{field}: ")) for e in exc.errors()]) from exc
    return got


def dump(item: str, value: Any) -> Any:
    """An item's model value as JSON (the calendar without its planned stops: their own item)."""
    out = ITEMS[item].adapter.dump_python(value, mode="json")
    if item == "calendar":
        out.pop("planned_stops", None)
    return out


def value_of(settings: Settings, item: str) -> Any:
    """``item``'s model value in ``settings``."""
    path = ITEMS[item].path
    if path == "calendar.planned_stops":
        return settings.calendar.planned_stops
    if path.startswith("declared."):
        return getattr(settings.declared, path.removeprefix("declared."))
    return getattr(settings, path)


def _update(file: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of ``file`` with the items' ``values`` in place."""
    update: dict[str, Any] = {}
    if "assets" in values:
        update["assets"] = values["assets"]
    cal = file.calendar
    if "calendar" in values:
        cal = values["calendar"].model_copy(update={"planned_stops": cal.planned_stops})
    if "planned-downtime" in values:
        cal = cal.model_copy(update={"planned_stops": values["planned-downtime"]})
    if cal is not file.calendar:
        update["calendar"] = cal
    fields = {ITEMS[i].path.removeprefix("declared."): v for i, v in values.items()
              if ITEMS[i].path.startswith("declared.")}
    if fields:
        update["declared"] = file.declared.model_copy(update=fields)
    return update


def effective_settings(base: Settings, values: dict[str, Any]) -> Settings:
    """``base`` (as the app was built: the file's settings and any runtime override) with the
    items' ``values`` in place. The result counts them as validated (its fingerprint is of the
    file overlaid by them, ``config.fingerprint``); the runtime overrides stay overrides."""
    if not values:
        return base
    file = base.as_validated()
    update = _update(file, values)
    merged = file.model_copy(update=update)
    merged.model_post_init(None)  # the supplied values are part of what was validated
    runtime = {k: getattr(base, k) for k in type(base).model_fields
               if k not in update and getattr(base, k) != getattr(file, k)}
    return merged.model_copy(update=runtime) if runtime else merged


def _checked(settings: Settings) -> Settings:
    problems = cross_check(settings)
    if problems:
        raise DeclaredInvalid(problems)
    return settings


@dataclass(frozen=True, slots=True)
class Version:
    """The version of an item in force (0: the configuration's)."""

    version: int
    supplied_by: str
    supplied_at_ns: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "supplied_by": self.supplied_by,
                "supplied_at": iso(self.supplied_at_ns),
                "source": CONFIG if self.version == 0 else "api", "reason": self.reason}


_CONFIG_VERSION: Final = Version(0, CONFIG, None, "the configuration file")


def config_versions() -> dict[str, dict[str, Any]]:
    """Every item at version 0: what an assessment records when nothing was supplied."""
    return {item: _CONFIG_VERSION.as_dict() for item in ITEMS}


class DeclaredEvidence:
    """The declared items in force for one app: the registry's latest versions over ``base``
    (see the module docstring). ``settings`` and ``versions()`` change only through ``put``
    and ``revert``, which callers serialise (the route holds a lock)."""

    def __init__(self, base: Settings, registry: DeclaredRegistry) -> None:
        self.base = base
        self.registry = registry
        #: items whose stored latest version no longer fits the configuration (e.g. a tag of
        #: the file names an asset the supplied register lacks): the file's value is in force
        self.rejected: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        self._versions: dict[str, Version] = {}
        for item, v in sorted(registry.latest().items()):
            if item not in ITEMS or v.value is None:
                continue
            try:
                got = ITEMS[item].adapter.validate_python(v.value)
                _checked(effective_settings(base, {**self._values, item: got}))
            except (ValidationError, DeclaredInvalid) as exc:
                self.rejected[item] = (f"version {v.version} does not fit the configuration, "
                                       f"the file's value is in force: {exc}")
                log.error("declared %s %s", item, self.rejected[item])
                continue
            self._values[item] = got
            self._versions[item] = Version(v.version, v.supplied_by, v.supplied_at_ns, v.reason)
        self.settings = effective_settings(base, self._values)

    @classmethod
    def open(cls, base: Settings) -> DeclaredEvidence:
        """Over the registry beside ``base``'s store (``store.declared.declared_path``)."""
        return cls(base, DeclaredRegistry(declared_path(base.store)))

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> DeclaredEvidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self, item: str) -> Version:
        return self._versions.get(item, _CONFIG_VERSION)

    def versions(self) -> dict[str, dict[str, Any]]:
        """Every item's version in force, as an assessment records it."""
        return {item: self.version(item).as_dict() for item in ITEMS}

    def value(self, item: str) -> Any:
        """``item``'s value in force, as JSON."""
        return dump(item, value_of(self.settings, item))

    def propose(self, item: str, value: Any | None) -> Settings:
        """The settings in force if ``item`` became ``value`` (a validated model object; None:
        the configuration's), checked across fields; a DeclaredInvalid otherwise."""
        values = {k: v for k, v in self._values.items() if k != item}
        if value is not None:
            values[item] = value
        return _checked(effective_settings(self.base, values))

    def record(self, item: str, value: Any | None, who: str, reason: str) -> DeclaredVersion:
        """Store ``value`` (validated, from ``validate``; None: back to the configuration's) as
        ``item``'s next version (a file write: callers in an event loop run it in a thread)."""
        return self.registry.put(item, None if value is None else dump(item, value), who, reason)

    def adopt(self, item: str, value: Any | None, stored: DeclaredVersion,
              settings: Settings) -> None:
        """Put the version ``record`` stored, and ``settings`` (from ``propose``), in force."""
        who, reason = stored.supplied_by, stored.reason
        if value is None:
            self._values.pop(item, None)
            self._versions.pop(item, None)
        else:
            self._values[item] = value
            self._versions[item] = Version(stored.version, who, stored.supplied_at_ns, reason)
        self.rejected.pop(item, None)
        self.settings = settings

    def config_value(self, item: str) -> Any:
        """``item``'s value in the configuration (version 0), as JSON."""
        return dump(item, value_of(self.base.as_validated(), item))

    def audit(self, item: str | None, since_ns: int | None, until_ns: int | None,
              ) -> list[dict[str, Any]]:
        """The versions supplied in [since_ns, until_ns) (of ``item``, or of all), each with
        the value it replaced (``old``, of the version before; version 0: the file's)."""
        rows = self.registry.history(item, since_ns, until_ns)
        prior = self._before
        return [{"item": r.item, "version": r.version, "old_version": r.version - 1,
                 "supplied_at": iso(r.supplied_at_ns), "supplied_by": r.supplied_by,
                 "reason": r.reason, "old": prior(r),
                 "new": self.config_value(r.item) if r.value is None else r.value,
                 "to_config": r.value is None}
                for r in rows]

    def _before(self, r: DeclaredVersion) -> Any:
        got = self.registry.version(r.item, r.version - 1) if r.version > 1 else None
        return self.config_value(r.item) if got is None or got.value is None else got.value
