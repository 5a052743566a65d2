"""Load a YAML file into :class:`Settings` (or :class:`TierCriteria`), naming the file, field
path and reason of every error.

String values may refer to environment variables, for containers and secrets: ``${VAR}``
is the variable's value (an error naming file, line and variable when it is not set),
``${VAR:-default}`` its value or ``default`` when it is unset or empty, and ``$${`` a
literal ``${``. Only values are substituted (after YAML parsing), so a value with ``:``
or ``#`` in it cannot change the structure of the file, and comments are left alone.

A file must be UTF-8 (an error names the byte offset of the first bad byte), must not
repeat a key in a mapping (YAML parsers silently keep the last, which hides a typo or a
bad merge: an error names the line and the key path), and must declare something (an empty
file, or one with neither assets nor devices, is refused). No message echoes a secret: the
password of a URL and the value of a secret field show as ``***`` (:mod:`config.redact`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .redact import is_secret_field, redact
from .settings import Settings, cross_check
from .tiers import TierCriteria, tiers_cross_check

M = TypeVar("M", bound=BaseModel)

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


_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


def expand_env(value: str, env: Mapping[str, str], where: str) -> str:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` replaced from ``env``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name is None:
            raise ConfigError(
                # not the whole value: it may be a password
                f"{where}: malformed ${{...}} at character {m.start() + 1} of the value",
                [(where, "expected ${NAME} or ${NAME:-default} (NAME: letters, digits, _)")],
            )
        got = env.get(name)
        if got:
            return got
        if default is not None:
            return default
        if got is not None:
            return got  # set but empty, and no default: empty is what the user set
        raise ConfigError(
            f"{where}: environment variable {name} is not set",
            [(where, f"${{{name}}} needs the environment variable {name} "
                     f"(or a default: ${{{name}:-value}})")],
        )

    return _VAR.sub(sub, value)


def _without_sexagesimal() -> dict[Any, list[tuple[str, Any]]]:
    """SafeLoader's implicit resolvers minus YAML 1.1's base-60 numbers: an unquoted shift end
    ``20:00`` stays the text "20:00" instead of becoming the integer 1200 (YAML 1.2 has no
    base-60 numbers either)."""
    base60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
    resolvers: dict[Any, list[tuple[str, Any]]] = {}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = []
        for tag, regexp in entries:
            if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
                regexp = _NotBase60(regexp, base60)
            kept.append((tag, regexp))
        resolvers[first] = kept
    return resolvers


class _NotBase60:
    """A resolver pattern that matches what ``pattern`` does, except base-60 numbers."""

    def __init__(self, pattern: re.Pattern[str], base60: re.Pattern[str]) -> None:
        self._pattern, self._base60 = pattern, base60

    def match(self, value: str) -> re.Match[str] | None:
        return None if self._base60.match(value) else self._pattern.match(value)


def _env_loader(source: str, env: Mapping[str, str]) -> type[yaml.SafeLoader]:
    class EnvLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = _RESOLVERS

        def construct_scalar(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
            value = super().construct_scalar(node)
            if isinstance(value, str) and "${" in value:
                return expand_env(value, env, f"{source}:{node.start_mark.line + 1}")
            return value

    return EnvLoader


_RESOLVERS = _without_sexagesimal()


def _validate(model: type[M], data: Any, source: str,
              cross: Callable[[M], list[tuple[str, str]]]) -> M:
    """Validate parsed YAML into ``model``, then its cross-field checks; raise ConfigError
    listing every problem with the file and the field path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: invalid configuration", [(source, "the top level must be a mapping")])
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        problems = []
        # pydantic's own rendering (str(exc)) prints every input value: only msg is used,
        # and a secret field's value is blanked from it too
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check its spelling)"
            elif err["type"] == "finite_number":
                msg = f"{err.get('input')!s} is not a finite number"
            problems.append((f"{source}: {_loc(err['loc'])}", redact(msg, _secret_inputs(err))))
        raise ConfigError(f"{source}: {len(problems)} invalid field(s)", problems) from None
    problems = [(f"{source}: {loc}", reason) for loc, reason in cross(value)]
    if problems:
        raise ConfigError(f"{source}: {len(problems)} invalid field(s)", problems)
    return value


def _secret_inputs(err: Any) -> list[str]:
    """The input of an error on a secret field (password, token...), to blank from its message."""
    names = [p for p in err["loc"] if isinstance(p, str)]
    value = err.get("input")
    if names and is_secret_field(names[-1]) and isinstance(value, str | int | float):
        return [str(value)]
    return []


def settings_from_dict(data: Any, source: str = "<config>") -> Settings:
    """Validate parsed YAML; raise ConfigError listing every problem."""
    return _validate(Settings, data, source, cross_check)


def _decode(p: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        where = f"{p}:{line}:{column}"
        reason = (f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                  "(save the file as UTF-8)")
        raise ConfigError(f"{where}: {reason}", [(where, reason)]) from None


def _duplicate_keys(node: yaml.Node | None, source: str, path: str = "",
                    seen_nodes: set[int] | None = None) -> None:
    """Raise ConfigError at the first key repeated within one mapping (``<<`` merges are
    YAML's way to override, and are left alone)."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias of a node already checked (or a recursive one)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                here = f"{path}.{key.value}" if path else str(key.value)
                if key.value in seen:
                    reason = (f"duplicate key at line {key.start_mark.line + 1} (first at line "
                              f"{seen[key.value]}): YAML would silently keep only the last")
                    raise ConfigError(f"{source}: {here}: {reason}", [(f"{source}: {here}", reason)])
                seen[key.value] = key.start_mark.line + 1
                _duplicate_keys(value, source, here, seen_nodes)
            else:
                _duplicate_keys(value, source, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, source, f"{path}[{i}]", seen_nodes)


def _read_yaml(path: str | Path, env: Mapping[str, str] | None) -> Any:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{p}: cannot read: {reason}") from exc
    text = _decode(p, raw)
    # a SafeLoader subclass: as safe as yaml.safe_load, plus ${VAR} in values
    try:
        loader = _env_loader(str(p), os.environ if env is None else env)(text)
    except yaml.reader.ReaderError as exc:  # a control character (checked before parsing)
        line = text.count("\n", 0, exc.position) + 1
        where = f"{p}:{line}"
        reason = f"character #x{exc.character:04x} is not allowed in YAML ({exc.reason})"
        raise ConfigError(f"{where}: {reason}", [(where, reason)]) from None
    try:
        node = loader.get_single_node()
        _duplicate_keys(node, str(p))
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML", [(where, f"not valid YAML: {reason}")]) from exc
    finally:
        loader.dispose()


def load_settings(path: str | Path, env: Mapping[str, str] | None = None, *,
                  store_only: bool = False) -> Settings:
    """Read and validate a YAML configuration file; ``${VAR}`` come from ``env`` (default:
    the process environment). A file that declares neither assets nor devices is refused,
    unless ``store_only`` (the caller reads the store section alone: the spool commands)."""
    data = _read_yaml(path, env)
    if data is None:
        raise ConfigError(f"{path}: the file is empty: declare assets (and devices to collect from)")
    settings = settings_from_dict(data, str(path))
    if not settings.assets and not settings.devices and not store_only:
        # devices alone are collected; assets alone are served (a central KPI service)
        raise ConfigError(f"{path}: declares neither assets nor devices: nothing to collect, "
                          "store or assess")
    return settings


def load_tiers(path: str | Path | None = None) -> TierCriteria:
    """Read and validate a tier criteria file (default: the shipped ``config/tiers.yaml``)."""
    p = Path(path) if path is not None else shipped_config("tiers.yaml")
    return _validate(TierCriteria, _read_yaml(p, None), str(p), tiers_cross_check)


def shipped_config(name: str) -> Path:
    """Path of a configuration file shipped with tierproof (``demo.yaml``, ``examples/modbus.yaml``)."""
    return SHIPPED_DIR / name
