"""Search plots: PNGs written from synthetic trial records, skipped when unsupported."""

from __future__ import annotations

import math
import warnings

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest

from gunn_search.results.plots import (
    COMPLETED,
    CURVES_FILE,
    FAILED,
    HISTORY_FILE,
    IMPORTANCES_FILE,
    PARALLEL_FILE,
    STOPPED,
    TrialRecord,
    status_kind,
    write_search_plots,
)
from gunn_search.results.importances import param_importances
from gunn_search.results.search_axes import searched_axes

from gunn_search.status import TrialStatus

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_FILES = {HISTORY_FILE, IMPORTANCES_FILE, PARALLEL_FILE, CURVES_FILE}


def _hist(n_epochs: int, final: float) -> list[dict]:
    return [{"epoch": e, "val_acc": final * (e / n_epochs) ** 0.5, "train_loss": 2.0 / e}
            for e in range(1, n_epochs + 1)]


def _params(i: int, family: str, n: int, lr: float, wd: float, bs: int) -> dict:
    return {"family": family, "stage1.N": n, "stage1.P": 20, "lr": lr, "weight_decay": wd,
            "batch_size": bs, "cost.params": 1000 * n + 7 * i}


def synthetic_records() -> list[TrialRecord]:
    specs = [  # family, N, lr, wd, bs, status, epochs, value
        ("gunn", 240, 0.1, 1e-4, 64, "completed", 6, 0.71),
        ("gunn", 120, 0.01, 5e-4, 128, "completed", 6, 0.64),
        ("sunn", 240, 0.3, 1e-5, 64, "stopped by ASHA", 3, 0.42),
        ("gunn", 180, 0.05, 1e-3, 32, "completed", 6, 0.78),
        ("sunn", 120, 0.003, 3e-5, 128, "stopped by ASHA", 2, 0.31),
        ("sunn", 150, 0.04, 2e-4, 64, "completed", 6, 0.69),
        ("gunn", 220, 0.15, 8e-5, 32, "completed", 6, 0.74),
        ("gunn", 300, 0.2, 2e-4, 64, "rejected by budget", 0, None),
        ("sunn", 200, 0.02, 1e-4, 32, "errored: RuntimeError('boom')", 0, None),
        ("gunn", 160, 1.0, 1e-4, 64, "non-finite loss", 2, 0.12),
        ("gunn", 200, 0.07, 3e-4, 128, "oom", 0, None),
    ]
    out = []
    for i, (fam, n, lr, wd, bs, status, epochs, value) in enumerate(specs):
        hist = _hist(epochs, value) if epochs and value is not None else []
        out.append(TrialRecord(f"trial_{i:03d}", _params(i, fam, n, lr, wd, bs), hist, status, value))
    return out


def assert_png(path, min_bytes: int = 5000) -> None:
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    # dpi 100 and figures a few inches wide/high: a few hundred pixels each way
    assert 200 <= img.shape[0] <= 2000 and 400 <= img.shape[1] <= 3000
    assert img.std() > 0.01  # not a blank canvas


@pytest.fixture(autouse=True)
def _no_leaked_figures():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before  # every figure closed after saving


def test_all_four_plots_written(tmp_path):
    out = tmp_path / "plots"  # does not exist yet: created
    paths = write_search_plots(synthetic_records(), out)
    assert {p.name for p in paths} == ALL_FILES
    assert len(paths) == 4
    for p in paths:
        assert p.parent == out
        assert_png(p)


def test_importances_exclude_constant_and_derived_params():
    imp = param_importances(synthetic_records())
    # stage1.P is constant, cost.* is derived; the rest vary across trials with a value
    assert set(imp) == {"family", "stage1.N", "lr", "weight_decay", "batch_size"}
    assert all(v >= 0 for v in imp.values())
    assert math.isclose(sum(imp.values()), 1.0, rel_tol=1e-6)


def test_searched_axes_scaling():
    axes = {a.name: a for a in searched_axes(synthetic_records())}
    assert set(axes) == {"family", "stage1.N", "lr", "weight_decay", "batch_size"}
    assert axes["lr"].log and axes["weight_decay"].log  # > 1 decade
    assert not axes["stage1.N"].log and axes["stage1.N"].kind == "int"
    assert axes["family"].kind == "categorical" and axes["family"].choices == ["gunn", "sunn"]
    assert axes["family"].position("gunn") == 0.0 and axes["family"].position("sunn") == 1.0
    lr = axes["lr"]
    assert lr.position(lr.low) == pytest.approx(0.0) and lr.position(lr.high) == pytest.approx(1.0)
    assert math.isnan(lr.position(None))


def test_axes_follow_the_sampled_distributions():
    """A log-sampled range is a log axis even when the trials span less than a decade; a choice
    of numbers is a numeric axis; a categorical keeps the written order."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    recs = [TrialRecord(f"t{i}", {"optim.lr": lr, "model.stages.0.P": P, "model.family": fam,
                                  "batch_size": bs}, [], "completed", v)
            for i, (lr, P, fam, bs, v) in enumerate([(0.05, 10, "sunn", 64, 0.5),
                                                      (0.1, 20, "gunn", 128, 0.7),
                                                      (0.2, 30, "gunn", 64, 0.6),
                                                      (0.03, 15, "sunn", 256, 0.4),
                                                      (0.25, 25, "gunn", 128, 0.65)])]
    dists = {"optim.lr": FloatDistribution(0.02, 0.3, log=True),
             "model.stages.0.P": IntDistribution(10, 30),
             "model.family": CategoricalDistribution(["sunn", "gunn"]),
             "batch_size": CategoricalDistribution([64, 128, 256])}
    axes = {a.name: a for a in searched_axes(recs, dists)}
    lr = axes["optim.lr"]
    assert lr.kind == "float" and lr.log and (lr.low, lr.high) == (0.02, 0.3)
    assert lr.position(0.02) == 0.0 and lr.position(0.3) == 1.0
    assert lr.position(math.sqrt(0.02 * 0.3)) == pytest.approx(0.5)  # geometric middle
    assert axes["model.stages.0.P"].kind == "int" and not axes["model.stages.0.P"].log
    assert axes["batch_size"].kind == "int" and axes["batch_size"].high == 256
    assert axes["model.family"].choices == ["sunn", "gunn"]
    imp = param_importances(recs, distributions=dists)
    assert set(imp) <= set(dists) and math.isclose(sum(imp.values()), 1.0, rel_tol=1e-6)


def test_single_record_skips_importances_and_parallel(tmp_path):
    rec = synthetic_records()[0]
    paths = write_search_plots([rec], tmp_path)
    names = {p.name for p in paths}
    assert names == {HISTORY_FILE, CURVES_FILE}
    for p in paths:
        assert_png(p)
    assert not (tmp_path / IMPORTANCES_FILE).exists()
    assert not (tmp_path / PARALLEL_FILE).exists()


def test_all_values_none(tmp_path):
    recs = synthetic_records()
    for r in recs:
        r.value = None
    paths = write_search_plots(recs, tmp_path)
    names = {p.name for p in paths}
    assert IMPORTANCES_FILE not in names and PARALLEL_FILE not in names
    for p in paths:
        assert_png(p, min_bytes=2000)
    # and with no history either
    for r in recs:
        r.history = []
    paths = write_search_plots(recs, tmp_path / "bare")
    assert {p.name for p in paths} <= {HISTORY_FILE}
    for p in paths:
        assert_png(p, min_bytes=2000)


def test_empty_and_degenerate_inputs(tmp_path):
    assert write_search_plots([], tmp_path / "empty") == []
    # two trials, identical params: nothing varies -> no importances / parallel coordinates
    recs = synthetic_records()[:2]
    recs[1].params = dict(recs[0].params)
    names = {p.name for p in write_search_plots(recs, tmp_path / "same")}
    assert names == {HISTORY_FILE, CURVES_FILE}
    # equal values and non-finite values / params must not crash
    recs = synthetic_records()[:4]
    for r in recs:
        r.value = 0.5
    recs[2].value = float("nan")
    recs[3].params["lr"] = float("inf")
    recs[3].history.append({"epoch": 99, "val_acc": float("nan")})
    paths = write_search_plots(recs, tmp_path / "flat")
    assert HISTORY_FILE in {p.name for p in paths}
    for p in paths:
        assert_png(p, min_bytes=2000)


def test_no_experimental_warnings(tmp_path):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        write_search_plots(synthetic_records(), tmp_path)


def test_status_kind_follows_the_trial_status_enum():
    assert status_kind(TrialStatus.COMPLETED) == status_kind("completed") == COMPLETED
    assert status_kind(TrialStatus.STOPPED) == STOPPED
    for s in (TrialStatus.ERRORED, TrialStatus.REJECTED, TrialStatus.NONFINITE, TrialStatus.OOM,
              "no such status", "", None):
        assert status_kind(s) == FAILED


def test_importances_never_mix_fidelities():
    """Finished trials when enough are; else the highest epoch with enough trials, each at what
    it reported there; else none (issue: a mid-schedule val_acc can rank backwards)."""
    from gunn_search.results.importances import MIN_TRIALS, importance_trials

    recs = synthetic_records()
    fid = importance_trials(recs)
    assert fid.epoch is None and fid.label == "from 5 trials trained to the end"
    assert {r.status for r, _ in fid.valued} == {"completed"}
    few = [r for r in recs if r.trial_id not in ("trial_005", "trial_006")]  # 3 finished
    fid = importance_trials(few)
    # at epoch 2: the 3 finished, the 2 stopped ones (not the non-finite one)
    assert (fid.epoch, fid.label) == (2, "at epoch 2, from 5 trials")
    at2 = {r.trial_id: v for r, v in fid.valued}
    assert at2["trial_004"] == pytest.approx(0.31)  # its own epoch-2 value, not a final
    for r in few:  # where a branch ran, the rung compared its annealed val_acc
        for m in r.history:
            if m["epoch"] == 2:
                m["annealed_val_acc"] = 0.5
    assert {v for _, v in importance_trials(few).valued} == {0.5}
    assert importance_trials(few[:4]) is None and MIN_TRIALS == 5
    assert param_importances(few[:4]) == {}
