"""Warm start: an earlier experiment's finished trials, told to the new search's sampler.

Each earlier trial's run holds its whole training config as params (dotted paths). A trial lies
inside the new space when sampling the space can give exactly that config: its values are
replayed through the space's own define-by-run function (`sample`) by a stand-in for Optuna's
trial that answers every suggestion with the earlier value, and the config that comes out must
equal the earlier one. What is compared leaves out where a trial ran and logged, where the data
lives, and `epochs`: an earlier, shorter search still says which configurations are good.

Ray's OptunaSearch ignores `points_to_evaluate` / `evaluated_rewards` with a define-by-run space
(ray #18587, #35319), so the trials go straight into its Optuna study: `add_trial` for the ones
already evaluated (complete, or pruned when ASHA stopped them), and `enqueue_trial` for the top K,
which Optuna hands out first and the new search trains again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from trainers.config import TrainConfig, parse_config
from trainers.config_errors import ConfigError
from trainers.model.spec import divides

from gunn_search.errors import SearchError
from gunn_search.private_names import distribution_contains, searcher_study
from gunn_search.space import Space, trial_config
from gunn_search.space.sample import sample
from gunn_search.space.schema import PLACEMENT_KEYS
from gunn_search.status import METRIC, Kind, parse_status
from gunn_search.tags import ROLE_TAG, STATUS_TAG

# Not compared: where a trial ran or logged, where its data lives, how long it trained.
IGNORED = {"tracking": True, "epochs": True, "eval_batch_size": True,
           **{k: True for k in PLACEMENT_KEYS}, "data": {"data_dir": True, "download": True}}


@dataclass
class PastTrial:
    run_id: str
    config: TrainConfig
    kind: Kind
    value: float  # its best val_acc
    history: dict[int, float] = field(default_factory=dict)  # epoch -> val_acc
    costs: dict[str, float] = field(default_factory=dict)


def config_from_params(params: dict[str, str]) -> TrainConfig:
    """A training config back from the params a trial's run logged (its dotted paths)."""
    data: dict = {}
    for path, text in params.items():
        keys = path.split(".")
        node = data
        for k, nxt in zip(keys, keys[1:] + [None]):
            if nxt is None:
                node[k] = yaml.safe_load(text) if text != "" else text
            else:
                node = node.setdefault(k, {})
    # list entries (model.stages.0.N) come back as {"0": {...}}: turn them into lists
    stages = data.get("model", {}).get("stages")
    if isinstance(stages, dict):
        data["model"]["stages"] = [stages[k] for k in sorted(stages, key=int)]
    return parse_config(data, "earlier trial")


def load_trials(client, experiment: str) -> list[PastTrial]:
    """The finished trials (completed or stopped early, with a val_acc) of every search in
    `experiment`."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SearchError(f"--warm-start {experiment}: no such experiment in the tracking store")
    runs = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = 'trial'",
                              max_results=10000)
    out = []
    for r in runs:
        status = parse_status(r.data.tags.get(STATUS_TAG))
        if status is None or status.kind not in (Kind.COMPLETED, Kind.STOPPED):
            continue
        if METRIC not in r.data.metrics:
            continue
        try:
            cfg = config_from_params(r.data.params)
        except ConfigError:
            continue  # a run of an older layout: nothing to replay
        hist = {m.step: m.value for m in client.get_metric_history(r.info.run_id, METRIC)}
        costs = {k: v for k, v in r.data.metrics.items() if k.startswith("cost.")}
        out.append(PastTrial(r.info.run_id, cfg, status.kind, max(hist.values()), hist, costs))
    return out


class _Replay:
    """Answers an Optuna define-by-run function with an earlier config's values."""

    def __init__(self, cfg: TrainConfig):
        self.data = cfg.model_dump(mode="python")
        self.params: dict = {}
        self.distributions: dict = {}

    def _value(self, name: str):
        path = name.split(".P_N")[0] + ".P" if ".P_N" in name else name
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        if keys[-1] == "n":  # the segment width of an n-form stage
            stage = self._get(keys[:-1])
            return stage["N"] // stage["P"] if divides(stage["P"], stage["N"]) else None
        return self._get(keys)

    def _get(self, keys):
        node = self.data
        for k in keys:
            node = node[k]
        return node

    def _answer(self, name, distribution):
        from optuna.distributions import CategoricalDistribution

        v = self._value(name)
        inside = (v in distribution.choices if isinstance(distribution, CategoricalDistribution)
                  else isinstance(v, (int, float)) and distribution_contains(distribution, v))
        if not inside:
            raise _Outside(name)
        self.params[name], self.distributions[name] = v, distribution
        return v

    def suggest_categorical(self, name, choices):
        from optuna.distributions import CategoricalDistribution
        return self._answer(name, CategoricalDistribution(list(choices)))

    def suggest_int(self, name, low, high, step=1, log=False):
        from optuna.distributions import IntDistribution
        return self._answer(name, IntDistribution(low, high, step=step, log=log))

    def suggest_float(self, name, low, high, step=None, log=False):
        from optuna.distributions import FloatDistribution
        return self._answer(name, FloatDistribution(low, high, step=step, log=log))


class _Outside(Exception):
    pass


def _replayed(space: Space, cfg: TrainConfig) -> tuple[_Replay, dict] | None:
    trial = _Replay(cfg)
    try:
        values = sample(trial, space)
        again = trial_config(space, values)
    except (_Outside, KeyError, IndexError, TypeError, ConfigError):
        return None
    if again.model_dump(mode="json", exclude=IGNORED) != cfg.model_dump(mode="json", exclude=IGNORED):
        return None
    return trial, values


def replay(space: Space, cfg: TrainConfig) -> tuple[dict, dict] | None:
    """(Optuna params, distributions) that make the space sample ``cfg``; None when ``cfg`` is
    not a point of the space."""
    got = _replayed(space, cfg)
    return None if got is None else (got[0].params, got[0].distributions)


def sampled_values(space: Space, cfg: TrainConfig) -> dict | None:
    """The trial config values (by dotted path, searched ones included) with which the space
    samples ``cfg``; None when ``cfg`` is not a point of the space."""
    got = _replayed(space, cfg)
    return None if got is None else got[1]


@dataclass
class WarmStart:
    experiment: str
    used: int
    outside: int
    enqueued: int


def apply(searcher, space: Space, past: list[PastTrial], experiment: str,
          top_k: int = 3) -> WarmStart:
    """Tell ``searcher`` (our OptunaSearch) the earlier trials inside ``space``; queue the top K."""
    import optuna
    from optuna.trial import TrialState

    objectives = space.search.objective_list
    study = searcher_study(searcher)
    inside = []
    for p in past:
        got = replay(space, p.config)
        if got is None:
            continue
        params, dists = got
        if p.kind is Kind.COMPLETED:
            values = [p.value] + [p.costs.get(o.metric) for o in objectives[1:]]
            if any(v is None for v in values):
                continue
            kw = {"values": values} if len(values) > 1 else {"value": values[0]}
            trial = optuna.trial.create_trial(params=params, distributions=dists, **kw)
        else:  # stopped by ASHA: ranked below complete trials, deeper-trained first
            trial = optuna.trial.create_trial(
                params=params, distributions=dists, state=TrialState.PRUNED,
                intermediate_values=p.history if len(objectives) == 1 else None)
        study.add_trial(trial)
        inside.append((p, params))
    best_first = sorted(inside, key=lambda x: (x[0].kind is not Kind.COMPLETED, -x[0].value))
    for _, params in best_first[:top_k]:
        study.enqueue_trial(params, skip_if_exists=False)
    return WarmStart(experiment, len(inside), len(past) - len(inside), min(top_k, len(inside)))


