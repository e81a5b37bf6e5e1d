"""Distributions inside a space file: each one moved out of the training config into the space's
dimensions (by dotted path), its values checked by that key's own validator, one of its values
left behind for `TrainConfig` to validate with the rest; and the way back to a YAML mapping.

Stages may give the segment width `n` instead of `N` (N = n * P): then every sample is a valid layer.
"""

from __future__ import annotations

import copy
import functools
import typing
from typing import Annotated, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from trainers.config import StageConfig, TrainConfig
from trainers.config_errors import ConfigError, core_type, describe_error
from trainers.model.spec import divides

from gunn_search.space import distributions as dist
from gunn_search.space.distributions import Choice, Distribution, Range
from gunn_search.space.paths import get_path, set_path

# Architecture ranges are enumerated (validity, budget); keep them to a sane size.
MAX_RANGE_VALUES = 4096


def extract(data: dict) -> tuple[dict[str, Distribution], tuple[str, ...]]:
    """Move every distribution of a space's training config (``data``, changed in place) into
    dimensions by dotted path; returns them and each stage's form ("n" or "N")."""
    dims: dict[str, Distribution] = {}
    forms: list[str] = []
    _extract(data, TrainConfig, "", dims, forms)
    return dims, tuple(forms)

def data_with_dims(data: dict, dims: dict[str, Distribution]) -> dict:
    """The space as a YAML mapping again (distributions written back in place)."""
    out = copy.deepcopy(data)
    for path, d in dims.items():
        stage_dim = path.rsplit(".", 1)[-1] if path.startswith("model.stages.") else None
        if stage_dim == "n":
            stage = get_path(out, path.rsplit(".", 1)[0])
            stage.pop("N", None)
        if isinstance(d, Choice) and len(d.values) == 1 and stage_dim in ("n", "N", "P"):
            set_path(out, path, d.values[0])
        else:
            set_path(out, path, to_yaml(d))
    return out


def to_yaml(d: Distribution) -> dict:
    if isinstance(d, Choice):
        return {"choice": list(d.values)}
    out = {"low": d.low, "high": d.high}
    if d.log:
        out["log"] = True
    if d.step is not None:
        out["step"] = d.step
    return out


# --- distributions inside the config ---------------------------------------------------------------

def _extract(data: dict, model: type[BaseModel], prefix: str, dims: dict, forms: list) -> None:
    """Move every distribution in ``data`` (a section validated by ``model``) into ``dims``,
    leaving one of its values in its place."""
    for key, value in list(data.items()):
        info = model.model_fields.get(key)
        if info is None or (model is TrainConfig and key == "tracking"):
            continue  # an unknown key is reported by the schema; tracking is never searched
        path = f"{prefix}{key}"
        t = core_type(info.annotation)
        if _is_model(t):
            if dist.looks_like_distribution(value):
                raise ConfigError("a section of settings cannot be a distribution; put "
                                  "distributions on the values inside it", field=path)
            if isinstance(value, dict):
                _extract(value, t, f"{path}.", dims, forms)
        elif model.__name__ == "ModelConfig" and key == "stages" and isinstance(value, list):
            for i, stage in enumerate(value):
                if isinstance(stage, dict):
                    _extract_stage(stage, f"{path}.{i}", dims)
                    forms.append("n" if "n" in stage else "N")
                    stage.pop("n", None)
        elif dist.looks_like_distribution(value):
            kind = scalar_kind(t)
            if kind is None:
                raise ConfigError("cannot be searched: it takes a list or a mapping, not one "
                                  "value", field=path)
            d = _parse(value, kind, coercer(model, key), path)
            dims[path] = d
            data[key] = dist.first(d)


def _extract_stage(stage: dict, path: str, dims: dict) -> None:
    """A stage's n/N, P, K, M: N-form stages sample only N that an allowed P divides."""
    if "n" in stage and "N" in stage:
        raise ConfigError("set exactly one of N (layer width) or n (segment width, N = n*P), "
                          "not both", field=path)
    if "n" not in stage and "N" not in stage:
        raise ConfigError("set one of N (layer width) or n (segment width, N = n*P)", field=path)
    if "P" not in stage:
        raise ConfigError("required key is missing", field=f"{path}.P")
    width = "n" if "n" in stage else "N"
    ds: dict[str, Distribution] = {}
    for dim in (width, "P", "K", "M"):
        if dim not in stage:
            continue
        v, where = stage[dim], f"{path}.{dim}"
        coerce = coercer(StageConfig, "N" if dim == "n" else dim)
        if dist.looks_like_distribution(v):
            d = _parse(v, "int", coerce, where)
            if isinstance(d, Range) and dist.size(d) > MAX_RANGE_VALUES:
                raise ConfigError(f"range [{d.low}, {d.high}] has more than {MAX_RANGE_VALUES} "
                                  "values; use a step or a choice list", field=where)
        elif dim in ("K", "M"):
            continue  # a plain value: the training config checks it
        else:
            try:
                d = Choice((coerce(v),))
            except ValueError as e:
                raise ConfigError(str(e), field=where) from None
        ds[dim] = d
    Ps = dist.values(ds["P"])
    if width == "N":
        Ns = dist.values(ds["N"])
        reach = reachable_N(ds["N"], ds["P"])
        if not reach:
            raise ConfigError(f"no allowed P divides any allowed N (N in {short_list(Ns)}, "
                              f"P in {short_list(Ps)})", field=f"{path}.P")
        # A value written in a choice that can never be sampled is surely a mistake.
        if isinstance(ds["N"], Choice):
            for N in Ns:
                if not any(divides(P, N) for P in Ps):
                    raise ConfigError(f"{N} is not divisible by any allowed P (P in "
                                      f"{short_list(Ps)})", field=f"{path}.N")
        if isinstance(ds["P"], Choice):
            for P in Ps:
                if not any(divides(P, N) for N in Ns):
                    raise ConfigError(f"{P} divides no allowed N (N in {short_list(Ns)})",
                                      field=f"{path}.P")
        N0 = reach[0]
        P0 = next(P for P in Ps if divides(P, N0))
    else:
        P0 = Ps[0]
        N0 = dist.first(ds["n"]) * P0
    stage.update({"N": N0, "P": P0})
    for dim, d in ds.items():
        dims[f"{path}.{dim}"] = d
        if dim in ("K", "M"):
            stage[dim] = dist.first(d)


def reachable_N(N: Distribution, P: Distribution) -> list[int]:
    """The allowed N of an N-form stage that some allowed P divides."""
    Ps = dist.values(P)
    return [n for n in dist.values(N) if any(divides(p, n) for p in Ps)]


def short_list(vs: list, limit: int = 12) -> str:
    if len(vs) <= limit:
        return "[" + ", ".join(dist.fmt(v) for v in vs) + "]"
    return "[" + ", ".join(dist.fmt(v) for v in vs[:limit]) + f", ... ({len(vs)} values)]"


def _parse(value: dict, kind: str, coerce, path: str) -> Distribution:
    try:
        return dist.parse(value, kind, coerce)
    except ValueError as e:
        raise ConfigError(str(e), field=path) from None


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def scalar_kind(t) -> str | None:
    """"int", "float" or "other" for a key holding one value; None for a list or mapping."""
    if t is bool or t is str or typing.get_origin(t) is Literal:
        return "other"
    if t is int:
        return "int"
    if t is float:
        return "float"
    return None


@functools.lru_cache(maxsize=None)
def coercer(model: type[BaseModel], key: str):
    """Validate one value as ``model``'s field ``key`` would; ValueError with the problem."""
    info = model.model_fields[key]
    t = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    adapter = TypeAdapter(t)

    def coerce(x):
        try:
            return adapter.validate_python(x)
        except ValidationError as e:
            raise ValueError(describe_error(e.errors()[0])[1]) from None

    return coerce
