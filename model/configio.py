"""Typed YAML configuration with ``--set a.b=value`` overrides.

A config file is YAML that validates into a pydantic model whose sections forbid unknown keys.
Overrides are applied to the raw mapping before validation, so the same checks (type, range,
unknown key) apply to the file and the command line alike, and errors name the dotted key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and what is allowed."""


def _allowed_keys(model_cls: type[BaseModel], path: list[str]) -> list[str]:
    """Field names valid at a dotted path of the model, for error messages."""
    cls: Any = model_cls
    for part in path:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return sorted(getattr(cls, "model_fields", {}))


def _format_errors(model_cls: type[BaseModel], exc: ValidationError, source: str) -> str:
    lines = [f"Invalid configuration ({source}):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(root)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model_cls, loc[:-1])
            lines.append(f"  {key}: unknown key. Allowed keys here: {', '.join(allowed) or '(none)'}.")
        else:
            msg = err["msg"]
            ctx = err.get("ctx") or {}
            if "expected" in ctx:
                msg = f"{msg} (allowed: {ctx['expected']})"
            lines.append(f"  {key}: {msg}; got {err.get('input')!r}.")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into ``(['a', 'b'], value)``; the value is parsed as YAML.

    Raises:
        ConfigError: no ``=`` or an empty key.
    """
    if "=" not in item:
        raise ConfigError(f"Override {item!r} must look like section.key=value.")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"Override {item!r} has an empty key.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=value`` override set (intermediate maps created)."""
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    for item in overrides:
        parts, value = parse_override(item)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"Override {item!r}: {part!r} is a value, not a section.")
            node = child
        node[parts[-1]] = value
    return result


def load_config(model_cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load YAML (or nothing: the model's defaults), apply overrides, validate.

    Raises:
        ConfigError: missing file, invalid YAML, unknown key, wrong type or out-of-range value.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Config file {p} does not exist.")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {p} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"Config file {p} must hold a mapping at the top level.")
        data = loaded or {}
        source = str(p)
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(data, overrides)
        source += " with --set " + " ".join(overrides)
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(model_cls, exc, source)) from None


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML, key order kept."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def config_hash(config: BaseModel | Mapping[str, Any]) -> str:
    """SHA-256 of a resolved config's canonical JSON (sorted keys, no spaces).

    A config and the mapping it dumps to (as saved in checkpoints) hash alike, so a run, its
    checkpoint and its bundle quote one hash.
    """
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
