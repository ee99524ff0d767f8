"""Job configs are dataclasses: one definition gives the defaults, the validation, the CLI flags
and the form fields."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


class ConfigError(ValueError):
    pass


def _base_type(tp: Any) -> Any:
    """``int | None`` -> ``int``; plain types unchanged."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def config_from_dict(cls: type, data: dict[str, Any] | None) -> Any:
    """Build and validate a config: unknown keys and wrong types are refused by name."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__module__}: {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        tp = _base_type(hints[name])
        if value is None:
            values[name] = None
            continue
        try:
            if tp is bool:
                if isinstance(value, str):
                    value = value.strip().lower() in {"1", "true", "yes", "on"}
                values[name] = bool(value)
            elif tp in (int, float, str):
                if tp is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError("not an integer")
                values[name] = tp(value)
            else:
                values[name] = value
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"option {name}: {value!r} is not a valid {tp.__name__} ({exc})") from None
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate:
        validate()
    return config


def add_arguments(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per config field, with its default and the field's help metadata."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        tp = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        helptext = f.metadata.get("help", "")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=helptext)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            parser.add_argument(flag, dest=f.name, type=tp if tp in (int, float) else str,
                                default=None, help=f"{helptext} (default: {default!r})")


def arguments_to_dict(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}
