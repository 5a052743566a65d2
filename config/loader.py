"""Load a YAML file into :class:`Settings`, naming the file, field path and reason of every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError
from .settings import Settings, cross_check

SHIPPED_DIR = Path(__file__).resolve().parent
#: discriminator values of the tagged unions (devices by protocol, store by type)
UNION_TAGS = frozenset({"modbus", "opcua", "mqtt", "sqlite", "influx"})


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in UNION_TAGS or p.startswith("function-") or p.endswith("]"):
            continue  # pydantic puts the branch of a tagged union into the path; users never wrote it
        else:
            out += f".{p}" if out else str(p)
    return out or "(top level)"


def settings_from_dict(data: Any, source: str = "<config>") -> Settings:
    """Validate parsed YAML; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: invalid configuration", [(source, "the top level must be a mapping")])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check its spelling)"
            problems.append((f"{source}: {_loc(err['loc'])}", msg))
        raise ConfigError(f"{source}: {len(problems)} invalid field(s)", problems) from exc
    problems = [(f"{source}: {loc}", reason) for loc, reason in cross_check(settings)]
    if problems:
        raise ConfigError(f"{source}: {len(problems)} invalid field(s)", problems)
    return settings


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}", [(str(p), exc.strerror or str(exc))]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML", [(where, str(reason))]) from exc
    return settings_from_dict(data, str(p))


def shipped_config(name: str) -> Path:
    """Path of a configuration file shipped with tierproof (``demo.yaml``, ``examples/modbus.yaml``)."""
    return SHIPPED_DIR / name
