"""Dotted paths into a config (``model.stages.0.P``): read and set them in a YAML mapping, and put
values into an already-validated config without validating it again."""

from __future__ import annotations

from pydantic import BaseModel


def _keys(path: str) -> list:
    return [int(k) if k.isdigit() else k for k in path.split(".")]


def get_path(data, path: str):
    for k in _keys(path):
        data = data[k]
    return data


def set_path(data, path: str, value) -> None:
    *head, last = _keys(path)
    for k in head:
        data = data[k]
    data[last] = value


def with_values(model: BaseModel, values: dict[str, object]) -> BaseModel:
    """``model`` with the values at the given dotted paths, as typed copies (`model_copy`): no
    value is validated again. For values that were validated already, each by its key's own
    validator (a space's distributions), and whose rules across keys the space has checked."""
    return _update(model, [(_keys(p), v) for p, v in values.items()])


def _update(node, items: list[tuple[list, object]]):
    here = {k[0]: v for k, v in items if len(k) == 1}
    deeper: dict = {}
    for k, v in items:
        if len(k) > 1:
            deeper.setdefault(k[0], []).append((k[1:], v))
    if isinstance(node, list):
        out = list(node)
        for i, v in here.items():
            out[i] = v
        for i, sub in deeper.items():
            out[i] = _update(out[i], sub)
        return out
    update = dict(here)
    for k, sub in deeper.items():
        update[k] = _update(getattr(node, k), sub)
    return node.model_copy(update=update)
