"""A read space with settings changed: the command line's flags (`with_settings`, typed updates
of the validated space) and any value by dotted path (`with_overrides`, the file edited and read
again).

A flag's value is checked where it enters, by the same rule the space file's key has: the
section it belongs to is validated again with the flag in it, the sections it does not touch go
in as the validated objects they are (pydantic does not validate a model instance again), and
the rules across keys are checked once more (`schema.settle`). The training config's values are
not validated a second time: a search with `--data-dir` and `--max-epochs` trains the file's
`optim.lr` as it was checked when the file was read.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from pydantic import ValidationError

from trainers.config import TrainConfig
from trainers.config_errors import ConfigError, validation_error

from gunn_search.space.schema import SearchSections, Space, parse_space, settle


def with_settings(space: Space, *, epochs: int | None = None, num_samples: int | None = None,
                  seed: int | None = None, gpus_per_trial: float | str | None = None,
                  cpus_per_trial: float | None = None, data_dir: str | None = None,
                  budget_epochs: float | None = None, time_budget: str | None = None,
                  budget_gpu_hours: float | None = None,
                  source: str = "command line") -> Space:
    """The space with the search's settings a command line changes; None leaves one as it is.

    ``epochs`` replaces the space's epochs (a distribution too); a first rung the file set
    beyond them is cut to them, an unset one follows them (`rungs.default_grace_period`).
    ``data_dir`` is taken from where the command runs, not a worker's working directory.
    """
    data = copy.deepcopy(space.data)
    search = {k: v for k, v in (("num_samples", num_samples), ("seed", seed),
                                ("budget_epochs", budget_epochs), ("time_budget", time_budget),
                                ("budget_gpu_hours", budget_gpu_hours)) if v is not None}
    if epochs is not None and "grace_period" in data.get("search", {}):
        search["grace_period"] = min(space.search.grace_period, max(1, epochs))
    resources = {k: v for k, v in (("gpus_per_trial", gpus_per_trial),
                                   ("cpus_per_trial", cpus_per_trial)) if v is not None}
    data["search"] = {**data.get("search", {}), **search}
    data["resources"] = {**data.get("resources", {}), **resources}
    try:  # from the file's sections as written: what it left unset is resolved again below
        sections = SearchSections.model_validate(
            {"name": space.name, "search": data["search"], "resources": data["resources"],
             "budget": space.budget})
    except ValidationError as e:
        raise validation_error(e, source, SearchSections) from None
    base, dims = space.base, space.dims
    if epochs is not None:
        try:
            base = TrainConfig.model_validate({**dict(base), "epochs": epochs})
        except ValidationError as e:
            raise validation_error(e, source, TrainConfig) from None
        dims = {p: d for p, d in dims.items() if p != "epochs"}
        data["epochs"] = epochs
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser().resolve())
        base = base.model_copy(update={"data": base.data.model_copy(update={"data_dir": data_dir})})
        data.setdefault("data", {})["data_dir"] = data_dir
    out = dataclasses.replace(space, base=base, dims=dims, search=sections.search,
                              resources=sections.resources, data=data)
    return settle(out, source)


def with_overrides(space: Space, overrides: dict, source: str = "command line") -> Space:
    """The space with values set by dotted path (distributions too), validated like the file."""
    data = copy.deepcopy(space.data)
    for path, value in overrides.items():
        section = data
        *head, last = path.split(".")
        try:
            for k in head:  # a list index (model.stages.0.K) picks an existing entry
                section = (section[int(k)] if isinstance(section, list)
                           else section.setdefault(k, {}))
            section[int(last) if isinstance(section, list) else last] = value
        except (ValueError, IndexError, TypeError, AttributeError):
            raise ConfigError("no such setting to override", file=source, field=path) from None
    out = parse_space(data, source)
    object.__setattr__(out, "source", space.source)
    return out


__all__ = ["with_settings", "with_overrides"]
