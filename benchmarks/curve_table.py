"""A recorded-curve table: configurations of a space, each trained to the end on a few training
seeds, with what a search could have measured at every epoch. `record_curves.py` writes one,
`simulate.py` replays searches on it.

On disk, one folder (benchmarks/data/curves/<name>/):
- `meta.json`: the problem it was recorded on (space file, epochs, schedule, data fractions,
  batch size, device), the sample (count, seed), the branch lengths and the epochs they follow.
- `configs.csv`: `config`, then each searched value under its dotted path (`optim.lr`, ...).
- `curves.csv`: a row per (config, seed, epoch): `val_acc`, `train_loss`, `seconds` (the epoch's
  training and evaluation), `status` (`nonfinite` from the epoch a loss went non-finite: val_acc
  0 from then on, as the search tells its searcher) and, for each branch length L, `anneal_L`
  (the val_acc of the trainer's own annealing branch of L epochs after this epoch, empty where
  none ran: not a rung epoch, or the schedule had no lower rate left) and `anneal_L_seconds`.
  A run's rows are written together when it ends, so a table cut short by a kill lacks whole runs
  only; `completed_runs` drops a run whose rows a kill cut.

How a sampler's suggestion maps to a recorded curve: every searched dimension has a coordinate in
[0, 1] (`unit`: a choice's or an integer's cell centre, a log range on its log scale), the same
coordinates the space-filling sample was drawn in; a suggestion gets the recorded configuration
nearest to it there (Euclidean). The sample is a scrambled Sobol sequence (scipy's, seeded), so
the configurations' cells are of about equal volume, and random search on the table draws about
the table's own distribution of final val_acc (checked by `simulate.py --check-mapping`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gunn_search.space import distributions as dist
from gunn_search.space.distributions import Choice, Range

BASE_FIELDS = ["config", "seed", "epoch", "val_acc", "train_loss", "seconds", "status"]
NONFINITE = "nonfinite"


def anneal_col(length: float) -> str:
    """The column of a branch of `length` epochs: `anneal_2`, `anneal_0.5`."""
    return f"anneal_{length:g}"


def curve_fields(lengths: list[float]) -> list[str]:
    return BASE_FIELDS + [c for L in lengths for c in (anneal_col(L), anneal_col(L) + "_seconds")]


# --- the space's own coordinates -------------------------------------------------------------------

def searched_dims(space) -> dict:
    """The dimensions a sampler draws, by dotted path, in the space's order."""
    return {p: d for p, d in space.dims.items() if dist.is_searched(d)}


def from_unit(d, u: float):
    """The value of distribution `d` at coordinate `u` in [0, 1)."""
    u = min(max(u, 0.0), 1 - 1e-12)
    if isinstance(d, Choice):
        return d.values[int(u * len(d.values))]
    if d.integer or d.step is not None:
        vals = dist.values(d)
        if d.log:  # log-spaced integers: cells of equal log width
            lo, hi = math.log(d.low), math.log(d.high + 1)
            v = int(math.exp(lo + u * (hi - lo)))
            return min(vals, key=lambda x: abs(x - v))
        return vals[int(u * len(vals))]
    if d.log:
        return math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
    return d.low + u * (d.high - d.low)


def unit(d, v) -> float:
    """The coordinate in [0, 1] of value `v` of `d` (inverse of `from_unit`; a discrete value's
    cell centre)."""
    if isinstance(d, Choice):
        return (list(d.values).index(v) + 0.5) / len(d.values)
    if d.integer or d.step is not None:
        vals = dist.values(d)
        if d.log:
            lo, hi = math.log(d.low), math.log(d.high + 1)
            return (math.log(v + 0.5) - lo) / (hi - lo)
        return (vals.index(min(vals, key=lambda x: abs(x - v))) + 0.5) / len(vals)
    if d.log:
        return (math.log(v) - math.log(d.low)) / (math.log(d.high) - math.log(d.low))
    return (v - d.low) / (d.high - d.low)


class UnitTrial:
    """An Optuna-trial stand-in answering each suggestion from a point of the unit cube, so that
    `gunn_search.space.sample` (the searcher's own define-by-run function) turns a Sobol point
    into a config with its costs, exactly as a search would. A name that depends on another
    value (an N-form stage's `P_N240`) reads its dimension's coordinate (`...P`)."""

    def __init__(self, coords: dict[str, float]):
        self.coords = coords

    def _u(self, name: str) -> float:
        return self.coords[name.split("_N")[0] if "_N" in name.rsplit(".", 1)[-1] else name]

    def suggest_categorical(self, name, choices):
        return from_unit(Choice(tuple(choices)), self._u(name))

    def suggest_int(self, name, low, high, step=1, log=False):
        return from_unit(Range(low, high, log=log, step=step, integer=True), self._u(name))

    def suggest_float(self, name, low, high, log=False, step=None):
        return from_unit(Range(low, high, log=log, step=step), self._u(name))


def space_filling_sample(space, n: int, seed: int) -> list[dict]:
    """`n` configurations: a scrambled Sobol sequence over the searched dimensions (seeded), each
    point made a config by the searcher's own sampling function. Config paths and searched
    dimensions are kept (an n-form stage's n beside its N and P)."""
    from scipy.stats import qmc

    from gunn_search.space.sample import sample

    dims = list(searched_dims(space))
    points = qmc.Sobol(len(dims), scramble=True, seed=seed).random(n)
    out = []
    for p in points:
        values = sample(UnitTrial(dict(zip(dims, p))), space)
        keep = [*dims, *space.config_paths]
        out.append({k: values[k] for k in dict.fromkeys(keep) if k in values})
    return out


def coordinates(space, values: dict) -> np.ndarray:
    """A configuration's point in the space's own coordinates (one per searched dimension; an
    n-form stage by its n and P)."""
    return np.array([unit(d, values[p]) for p, d in searched_dims(space).items()])


# --- the table -------------------------------------------------------------------------------------

@dataclass
class Table:
    """A table read back: configs by id, curves by (config, seed) as lists of epoch rows."""

    folder: Path
    meta: dict
    configs: dict[int, dict]
    runs: dict[tuple[int, int], list[dict]] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return int(self.meta["epochs"])

    @property
    def seeds(self) -> list[int]:
        return sorted({s for _, s in self.runs})

    def final(self, config: int, seed: int) -> float:
        return self.runs[(config, seed)][-1]["val_acc"]


def write_meta(folder: Path, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict | None:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_configs(folder: Path, configs: list[dict]) -> None:
    keys = list(dict.fromkeys(k for c in configs for k in c))
    with (folder / "configs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", *keys])
        for i, c in enumerate(configs):
            w.writerow([i, *(c.get(k, "") for k in keys)])


def _number(s: str):
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        return float(s)


def read_configs(folder: Path) -> dict[int, dict]:
    with (folder / "configs.csv").open() as f:
        return {int(r.pop("config")): {k: _number(v) for k, v in r.items()}
                for r in csv.DictReader(f)}


def completed_runs(folder: Path, epochs: int) -> dict[tuple[int, int], list[dict]]:
    """The runs of `curves.csv` with every epoch's row, each row parsed (numbers, None for an
    empty cell); a run a kill cut short is left out."""
    path = folder / "curves.csv"
    runs: dict[tuple[int, int], list[dict]] = {}
    if not path.exists():
        return runs
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                row = {k: (v if k == "status" else _number(v)) for k, v in r.items()}
                key = (int(row["config"]), int(row["seed"]))
                int(row["epoch"]), float(row["val_acc"])
            except (TypeError, ValueError, KeyError):  # a line cut short
                continue
            runs.setdefault(key, []).append(row)
    out = {}
    for key, rows in runs.items():
        rows.sort(key=lambda r: r["epoch"])
        if [r["epoch"] for r in rows] == list(range(1, epochs + 1)):
            out[key] = rows
    return out


def rewrite_curves(folder: Path, lengths: list[float], runs: dict) -> None:
    """`curves.csv` holding exactly `runs` (drops what a kill left half written)."""
    tmp = folder / "curves.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=curve_fields(lengths))
        w.writeheader()
        for key in sorted(runs):
            w.writerows(runs[key])
    os.replace(tmp, folder / "curves.csv")


def append_run(folder: Path, lengths: list[float], rows: list[dict]) -> None:
    """One run's rows, written and synced at once."""
    path = folder / "curves.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=curve_fields(lengths))
        if new:
            w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def load_table(folder: str | Path) -> Table:
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder}: no meta.json (not a recorded-curve table)")
    return Table(folder, meta, read_configs(folder), completed_runs(folder, int(meta["epochs"])))
