"""Job configs are dataclasses: one definition gives the defaults, the validation, the CLI flags
and the form fields. A field's metadata may carry ``help``, ``choices`` and ``group`` (the form
section it belongs to); ``list[str]`` fields take a list or a comma-separated string."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any


AUTO = "auto"  # a model chosen when the job is launched (e.g. the newest SFT model, else the base)


class ConfigError(ValueError):
    pass


def option(default, help: str, group: str = "", choices=None, **kwargs):
    """A config field with its help, form group and choices (a list default gets a factory)."""
    metadata = {"help": help, "group": group}
    if choices:
        metadata["choices"] = tuple(choices)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def _base_type(tp: Any) -> Any:
    """``int | None`` -> ``int``; plain types unchanged."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _is_list(tp: Any) -> bool:
    return tp is list or typing.get_origin(tp) is list


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclass(frozen=True)
class FieldSpec:
    """What a form or a flag needs to know about one config field."""

    name: str
    type: str  # "bool", "int", "float", "str" or "list"
    default: Any
    help: str
    choices: tuple[str, ...] | None
    group: str


def describe(cls: type) -> list[FieldSpec]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        kind = "list" if _is_list(tp) else getattr(tp, "__name__", "str")
        choices = f.metadata.get("choices")
        specs.append(FieldSpec(f.name, kind, _default(f), f.metadata.get("help", ""),
                               tuple(choices) if choices else None, f.metadata.get("group", "")))
    return specs


def _coerce(name: str, tp: Any, value: Any) -> Any:
    try:
        if _is_list(tp):
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(item).strip() for item in items if str(item).strip()]
        if tp is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
                    raise ValueError("expected true or false")
                return lowered in {"1", "true", "yes", "on"}
            return bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            if tp is int and isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else value
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError("not an integer")
                return int(value)
            return tp(value)
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {name}: {value!r} is not a valid "
                          f"{'list' if _is_list(tp) else tp.__name__} ({exc})") from None


def config_from_dict(cls: type, data: dict[str, Any] | None) -> Any:
    """Build and validate a config: unknown keys, wrong types and values outside a field's
    choices are refused by name; then the class's own ``validate()`` runs."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__module__}: {', '.join(unknown)}; "
                          f"known: {', '.join(fields)}")
    values = {}
    for name, value in data.items():
        if value is None and _default(fields[name]) is not None:
            continue  # an empty YAML value or form field: the default
        values[name] = None if value is None else _coerce(name, _base_type(hints[name]), value)
        choices = fields[name].metadata.get("choices")
        given = values[name] if isinstance(values[name], list) else [values[name]]
        wrong = [v for v in given if v is not None and v not in (choices or [v])]
        if wrong:
            raise ConfigError(f"option {name}: {', '.join(map(repr, wrong))} is not one of {', '.join(map(str, choices))}")
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate:
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return config


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x,y"]`` -> ``{"a": "1", "b": "x,y"}`` (values are coerced by the config)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, got {pair!r}")
        out[key.strip().replace("-", "_")] = value
    return out


def add_arguments(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per config field, with its default, choices and the field's help."""
    for spec in describe(cls):
        if spec.name in exclude:
            continue
        flag = "--" + spec.name.replace("_", "-")
        if spec.type == "list":
            parser.add_argument(flag, dest=spec.name, default=None, metavar="A,B",
                                help=f"{spec.help}; comma-separated" + (f" from {', '.join(spec.choices)}" if spec.choices else "")
                                + f" (default: {','.join(spec.default) or 'none'})")
        elif spec.type == "bool":
            parser.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                                default=None, help=spec.help)
        else:
            parser.add_argument(flag, dest=spec.name, default=None, choices=spec.choices,
                                type={"int": int, "float": float}.get(spec.type, str),
                                help=f"{spec.help} (default: {spec.default!r})")


def arguments_to_dict(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}
