"""``--config run.toml`` and ``--print-config`` for vcp's stage commands.

Keys are the commands' option names (``frames = 64``, ``compile = true``,
``strategy_for = {"long" = "center"}``, ``max-batch`` or ``max_batch``); one file can serve
both stages, with what only one of them takes in a ``[tensorize]`` or ``[extract]`` table
(a table's key wins over the same flat key). Flags on the command line override the file. The file is
read with the standard library's ``tomllib`` (``tomli`` on Python 3.10) and handed to click
as the command's ``default_map``, so every option keeps its own parsing and validation.
``--print-config`` prints the fully resolved settings as TOML, which ``--config`` reads back.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from vcp.store.readers import regular_file_problem

# Parameters that are not settings of the run (or are given on the command line only).
NOT_SETTINGS = {"config", "print_config", "dry_run", "debug", "interactive", "no_space_check"}


def _is_argument(param) -> bool:
    # by name, not class: typer may bring its own copy of click
    return getattr(param, "param_type_name", "") == "argument"


def _tomllib():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _key(param) -> str:
    """A parameter's key in a settings file: its option name (``--compile`` -> ``compile``)."""
    long = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return long[0][2:].replace("-", "_") if long else param.name


def _settings_of(data: dict, command: str, path: Path, ctx, param) -> dict:
    """The file's keys for ``command``: flat keys, then its own table (``[tensorize]`` or
    ``[extract]``) over them; the other commands' tables are theirs."""
    commands = {"tensorize", "extract"}
    flat = {k: v for k, v in data.items() if k not in commands}
    own = data.get(command, {})
    if not isinstance(own, dict):
        raise typer.BadParameter(f"[{command}] in {path} must be a table", ctx=ctx, param=param)
    spelled = {k.replace("-", "_"): k for k in flat}
    for key in own:
        if key.replace("-", "_") in spelled:  # the table wins over a flat key for its command
            flat.pop(spelled[key.replace("-", "_")])
    return {**flat, **own}


def load_config(ctx, param, value) -> Path | None:
    """Eager callback of ``--config``: the file's keys become the command's defaults."""
    if value is None:
        return None
    path = Path(value)
    problem = regular_file_problem(path)
    if problem:  # a FIFO or /dev/zero would be read for ever
        raise typer.BadParameter(f"cannot read {path}: {problem}", ctx=ctx, param=param)
    try:
        data = _tomllib().loads(path.read_text())
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}", ctx=ctx, param=param) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise typer.BadParameter(f"{path} is not valid TOML: {exc}", ctx=ctx, param=param) from None
    params = {_key(p): p for p in ctx.command.params if not getattr(p, "hidden", False)}
    defaults, spelled = {}, {}
    for key, item in _settings_of(data, ctx.info_name, path, ctx, param).items():
        name = key.replace("-", "_")
        if name not in params or params[name].name in NOT_SETTINGS:
            raise typer.BadParameter(f"unknown key {key!r} in {path}", ctx=ctx, param=param)
        target = params[name]
        if _is_argument(target):
            raise typer.BadParameter(f"{key!r} in {path}: give it on the command line", ctx=ctx, param=param)
        if name in spelled:
            raise typer.BadParameter(f"{spelled[name]!r} and {key!r} in {path} are the same setting: keep one", ctx=ctx, param=param)
        spelled[name] = key
        if name == "strategy_for" and isinstance(item, dict):
            item = [f"{sub}={strategy}" for sub, strategy in item.items()]
        problem = _type_problem(target, item)
        if problem:
            raise typer.BadParameter(f"{key!r} in {path}: {problem}", ctx=ctx, param=param)
        defaults[target.name] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def _type_problem(param, value) -> str | None:
    """Why a TOML value cannot be the option's (TOML's true is no number, 3 is no flag),
    or None; ranges and choices are then checked by the option itself."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if getattr(param, "multiple", False):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else f"expected a list of strings, got {value!r}"
    if getattr(param, "is_flag", False) or annotation is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"expected a whole number, got {value!r}"
    if annotation is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else f"expected a number, got {value!r}"
    if isinstance(annotation, type) and issubclass(annotation, Enum | str | Path):
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    return None


def _toml_value(value) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string


def settings_toml(ctx, values: dict) -> str:
    """The command's resolved options as TOML (arguments and run switches left out)."""
    lines = [f"# vcp {ctx.info_name}: resolved settings (read back with --config)"]
    for param in ctx.command.params:
        name = param.name
        if _is_argument(param) or name in NOT_SETTINGS or values.get(name) is None or getattr(param, "hidden", False):
            continue
        value = values[name]
        if name == "strategy_for":
            value = dict(item.rsplit("=", 1) for item in value)  # strategy names hold no "="
        lines.append(f"{_key(param)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
