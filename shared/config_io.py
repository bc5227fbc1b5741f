"""The one config loader of both stages: packaged recipes by name, YAML files with ``base:``, dotted
``key=value`` overrides, and typed dataclasses (a wrong key, type or value fails at load time).

A config reference is either a path to a YAML file (``./mine.yaml``) or the name of a packaged recipe
(``paper`` -> ``mllm3d/configs/<kind>/paper.yaml``, where kind is ``train`` or ``stage1``). A file may
start from another with ``base: NAME`` or ``base: relative/path.yaml`` and list only what it changes.

Hand-written rather than OmegaConf or pydantic: the typed build is ~80 lines over stdlib dataclasses,
keeps the dataclasses themselves dependency-free (the checkpoints store them as plain dicts), and gives
the exact one-line messages the CLIs print (``file: key = value: expected ...``); OmegaConf's structured
configs would add a dependency for the same checks and still need our range validation on top.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mllm3d.shared.errors import BadInputError

KINDS = ("train", "stage1")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
T = TypeVar("T")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def packaged_dir(kind: str) -> Path:
    """The folder of packaged recipes of ``kind`` (``train`` or ``stage1``)."""
    if kind not in KINDS:
        raise ValueError(f"config kind must be one of {KINDS}, got {kind!r}")
    return Path(str(resources.files("mllm3d.configs") / kind))


def packaged_names(kind: str) -> list[str]:
    """Names of the packaged recipes of ``kind`` (``default``, ``paper``, ...)."""
    return sorted(p.stem for p in packaged_dir(kind).glob("*.yaml"))


def resolve(ref: str | Path, kind: str) -> Path:
    """A config reference -> its YAML file: an existing path, else a packaged recipe's name."""
    p = Path(ref)
    if p.is_file():
        return p
    name = str(ref)[: -len(".yaml")] if str(ref).endswith(".yaml") else str(ref)
    if _NAME.match(name) and "/" not in str(ref):
        packaged = packaged_dir(kind) / f"{name}.yaml"
        if packaged.is_file():
            return packaged
    raise BadInputError(
        f"{ref}: config file not found (neither a file nor a packaged {kind} config; "
        f"packaged: {', '.join(packaged_names(kind))})"
    )


def read_yaml(ref: str | Path, kind: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config as a dict, its ``base:`` chain loaded first and deep-merged under it."""
    p = resolve(ref, kind)
    if p.resolve() in _seen:
        raise BadInputError(f"{p}: circular 'base:' chain {[str(s) for s in _seen]}")
    try:
        loaded = yaml.load(p.read_text(encoding="utf-8-sig"), Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise BadInputError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{p}: cannot read the config ({exc})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise BadInputError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
    data = dict(loaded or {})
    base = data.pop("base", None)
    if base is None:
        return data
    base_ref: str | Path = str(base)
    if (p.parent / str(base)).is_file():  # a path relative to this file wins over a packaged name
        base_ref = p.parent / str(base)
    try:
        base_data = read_yaml(base_ref, kind, (*_seen, p.resolve()))
    except BadInputError as exc:
        if not str(exc).startswith(f"{base_ref}: config file not found"):
            raise
        raise BadInputError(f"{p}: base: {exc}") from None
    return deep_merge(base_data, data)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursing into nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def set_dotted(data: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict (the value parsed as YAML)."""
    if "=" not in item:
        raise BadInputError(f"override {item!r}: expected key=value (e.g. model.stem=16)")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise BadInputError(f"override {item!r}: empty key")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise BadInputError(f"override {item!r}: {p!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        node[parts[-1]] = raw


def override_origins(overrides: Iterable[str]) -> dict[str, str]:
    """Dotted key -> ``--set KEY=VALUE`` for each ``key=value`` override (for :func:`blame`)."""
    out: dict[str, str] = {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key:
            out[key] = f"--set {item}"
    return out


def blame(exc: BadInputError, where: str, origins: Mapping[str, str]) -> BadInputError:
    """``exc`` (a message ``where: ...``) re-addressed to the option or ``--set`` that gave the key it names
    first; unchanged when it names none of ``origins``' keys (the file or the defaults are at fault)."""
    msg = str(exc)
    rest = msg[len(where) + 2:] if msg.startswith(f"{where}: ") else msg
    found = []
    for key, label in origins.items():
        m = re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", rest)
        if m:
            found.append((m.start(), -len(key), label))
    if not found:
        return exc
    label = min(found)[2]
    return BadInputError(f"{label}: {rest}" if where == "default recipe" else f"{where}: {label}: {rest}")


def load_mapping(ref: str | Path | None, kind: str, overrides: Iterable[str] = ()) -> tuple[dict[str, Any], str]:
    """The merged mapping of a config reference (None = nothing but the defaults) and ``key=value``
    overrides, with the name of its file for messages."""
    if ref is None:
        data: dict[str, Any] = {}
        where = "default recipe"
    else:
        path = resolve(ref, kind)  # once: read_yaml takes the resolved file as it is
        data, where = read_yaml(path, kind), str(path)
    for item in overrides:
        set_dotted(data, item)
    return data, where


def build(cls: type[T], data: Mapping[str, Any], where: str, prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from a (nested) mapping: an unknown key or a value of the wrong type
    raises one BadInputError naming the file (``where``), the dotted key, the value and what was expected."""
    if not isinstance(data, Mapping):
        raise BadInputError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise BadInputError(f"{where}: unknown key {prefix + key!r} (known in this section: {sorted(fields)})")
        kind = hints[key]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[key] = build(kind, value or {}, where, f"{prefix}{key}.")
        else:
            kwargs[key] = typed(kind, value, where, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except BadInputError as exc:  # a dataclass's own __post_init__ check
        raise BadInputError(f"{where}: {exc}") from None


def typed(kind: Any, value: Any, where: str, key: str) -> Any:
    """``value`` checked (numbers written as strings such as ``1e-3`` converted) against type ``kind``."""

    def fail(expected: str) -> BadInputError:
        return BadInputError(f"{where}: {key} = {value!r}: expected {expected}")

    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(kind)
        if value is None and type(None) in arms:
            return None
        for arm in (a for a in arms if a is not type(None)):
            try:
                return typed(arm, value, where, key)
            except BadInputError:
                continue
        names = [getattr(a, "__name__", str(a)).replace("NoneType", "null") for a in arms]
        raise fail(" or ".join(names))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail("an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        if not isinstance(value, list):
            raise fail(f"a list of {getattr(item, '__name__', item)}")
        return [typed(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or kind is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail("a mapping")
        return dict(value)
    return value


def save_yaml(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write a resolved config mapping as YAML (parent folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return p
