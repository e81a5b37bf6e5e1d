"""Reading YAML settings files and saying, in one line, what is wrong with them.

Both commands use these: `gunn-train` for its configs, `gunn-search` for its space files (a space
file is a training config whose values may be distributions). A problem is a `ConfigError` whose
text is one line, ``file: field: problem`` (the class is in `trainers.errors`).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from trainers.errors import ConfigError, first_line


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a file, read with `yaml.safe_load` only; ConfigError on any problem."""
    p = Path(path)
    src = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=src) from None
    except IsADirectoryError:
        raise ConfigError("not a file", file=src) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e.__class__.__name__}: {e}", file=src) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_problem(e), file=src) from None
    if data is None:
        raise ConfigError("empty file (expected a mapping of settings)", file=src)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of settings at the top level "
                          f"(got {type(data).__name__})", file=src)
    return data


def yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or first_line(e, "unknown error")
    if isinstance(e, yaml.constructor.ConstructorError):
        return f"{where}unsupported YAML tag (plain YAML only): {problem}"
    return f"{where}malformed YAML: {problem}"


def validation_error(err: ValidationError, source: str | None, model: type[BaseModel] | None,
                     prefix: str = "") -> ConfigError:
    """The first pydantic error as a one-line ConfigError naming ``source`` and the field.

    ``model`` (the validated class) lets an unknown key name the keys allowed there;
    ``prefix`` is the dotted path of the validated part within the file.
    """
    field, problem = describe_error(first_error(err.errors()), model)
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    return ConfigError(problem, file=source, field=field or None)


def first_error(errors: list[dict]) -> dict:
    """The error to report: the first, but a misspelt key rather than the key it leaves missing."""
    first = errors[0]
    if first["type"] == "missing":
        parent = first["loc"][:-1]
        for e in errors:
            if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent:
                return e
    return first


def loc_path(loc) -> str:
    """A pydantic location as a dotted path (list indices as `.0`, as in the MLflow params)."""
    out = ""
    for part in loc:
        if isinstance(part, str) and part.startswith(("~", "function-")):
            continue  # union tags and validator names are not fields
        out += f".{part}" if out else str(part)
    return out


def show(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def unknown_key(key: str, allowed: list[str] | None, hints: dict[str, str] | None = None) -> str:
    problem = f"unknown key {key!r}"
    if hints and key in hints:
        return f"{problem} ({hints[key]})"
    if allowed:
        close = difflib.get_close_matches(key, allowed, n=1)
        problem += f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
    return problem


def describe_error(err: dict, model: type[BaseModel] | None = None) -> tuple[str, str]:
    """(field path, problem) of one pydantic error."""
    loc, typ, ctx = err["loc"], err["type"], err.get("ctx") or {}
    got = f" (got {show(err['input'])})" if "input" in err else ""
    if typ == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1]) if model is not None else None
        return loc_path(loc[:-1]), unknown_key(str(loc[-1]), allowed)
    field = loc_path(loc)
    if typ == "missing":
        return field, "required key is missing"
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return field, f"must be an integer{got}"
    if typ in ("float_type", "float_parsing"):
        return field, f"must be a number{got}"
    if typ == "finite_number":
        return field, f"must be a finite number{got}"
    if typ in ("bool_type", "bool_parsing"):
        return field, f"must be true or false{got}"
    if typ == "string_type":
        return field, f"must be a string{got}"
    if typ == "list_type":
        return field, f"must be a list{got}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return field, f"must be a mapping of settings{got}"
    if typ == "literal_error":
        return field, f"unknown value {show(err.get('input'))} (expected {ctx.get('expected')})"
    if typ in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return field, "must not be empty"
    for t, op, k in (("greater_than_equal", ">=", "ge"), ("greater_than", ">", "gt"),
                     ("less_than_equal", "<=", "le"), ("less_than", "<", "lt")):
        if typ == t:
            return field, f"must be {op} {ctx.get(k)}{got}"
    if typ == "value_error":
        return field, str(err["msg"]).removeprefix("Value error, ")
    return field, f"{err['msg']}{got}"


def allowed_keys(model: type[BaseModel], loc) -> list[str] | None:
    """The field names of the model found at ``loc`` below ``model`` (a hint; None if unknown)."""
    t: Any = model
    try:
        for part in loc:
            t = core_type(t)
            if isinstance(part, int):
                t = typing.get_args(t)[0] if typing.get_origin(t) is list else None
            elif not part.startswith("~"):
                t = t.model_fields[part].annotation
        t = core_type(t)
        return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else None
    except Exception:  # noqa: BLE001 - only a hint
        return None


def core_type(t: Any) -> Any:
    """``t`` without Annotated and Optional (a union of several real types is kept)."""
    while True:
        origin = typing.get_origin(t)
        if origin is Annotated:
            t = typing.get_args(t)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t
