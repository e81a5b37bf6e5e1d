"""The recorded-curve table, the simulator's clock and the methods it drives (benchmarks/
curve_table.py, sim_engine.py, sim_methods.py, simulate.py), on tiny synthetic tables: the real
table is data recorded over hours, never in CI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks")]

import curve_table as ct  # noqa: E402
import sim_engine  # noqa: E402
import simulate  # noqa: E402

META = {"space": "smoke.yaml", "epochs": 12, "schedule": "step", "train_fraction": 0.5,
        "val_fraction": 0.3, "batch_size": 32, "configs": 32, "sample_seed": 0,
        "branch_at": [1, 2, 3, 4, 6, 8], "branch_lengths": [1.0, 2.0]}


def quality(values: dict) -> float:
    """A synthetic landscape: best near lr 0.1, wide stages."""
    lr = values["optim.lr"]
    width = values["model.stages.0.N"] + values["model.stages.1.N"]
    return 0.9 - 0.25 * abs(math.log(lr / 0.1)) - 0.004 * (64 - width)


def synthetic_table(folder: Path, n: int = 32, seeds=(0, 1)) -> ct.Table:
    """A table in the recorder's format: curves rising to each config's quality, the step
    schedule's jumps at epochs 6 and 9, branches previewing the end."""
    meta = {**META, "configs": n}
    space = simulate.table_space(meta, 0, 0)
    configs = ct.space_filling_sample(space, n, 0)
    ct.write_meta(folder, meta)
    ct.write_configs(folder, configs)
    for seed in seeds:
        for i, c in enumerate(configs):
            q = quality(c) + 0.01 * ((i * 7 + seed * 3) % 5 - 2)
            rows = []
            for e in range(1, 13):
                # mid-schedule val_acc ranks backwards (high lr looks bad before the drop)
                acc = q * (0.5 + 0.04 * e) if e < 6 else q * (0.9 + 0.01 * (e - 6))
                if e < 6:
                    acc -= 0.2 * math.log(c["optim.lr"] / 0.02) / 2.7
                row = {"config": i, "seed": seed, "epoch": e, "val_acc": round(max(acc, 0), 6),
                       "train_loss": 1.0 / e, "seconds": 1.0 + 0.01 * i, "status": ""}
                for L in meta["branch_lengths"]:
                    if e in meta["branch_at"]:
                        row[ct.anneal_col(L)] = round(q * (0.8 + 0.05 * L + 0.01 * e), 6)
                        row[ct.anneal_col(L) + "_seconds"] = L
                rows.append(row)
            ct.append_run(folder, meta["branch_lengths"], rows)
    return ct.load_table(folder)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return synthetic_table(tmp_path_factory.mktemp("table"))


def test_unit_coordinates_invert_the_sample(table):
    space = simulate.table_space(table.meta, 0, 0)
    lookup = sim_engine.Lookup(table, 0, space)
    for cid, values in table.configs.items():
        assert lookup.nearest(values) == cid
        assert all(0 <= u <= 1 for u in ct.coordinates(space, values))


def test_sample_is_space_filling_and_seeded(table):
    space = simulate.table_space(table.meta, 0, 0)
    a = ct.space_filling_sample(space, 16, 3)
    assert a == ct.space_filling_sample(space, 16, 3)
    assert a != ct.space_filling_sample(space, 16, 4)
    # each choice of a 2-valued dimension drawn about half the time (Sobol balance)
    assert sum(c["model.stages.0.n"] == 4 for c in a) == 8


def test_a_run_cut_short_is_dropped(tmp_path):
    t = synthetic_table(tmp_path, n=4, seeds=(0,))
    with (tmp_path / "curves.csv").open("a") as f:
        f.write("3,1,1,0.5,1.0,1.0,,0.6,1")  # seed 1's first epoch, cut mid-line by a kill
    assert set(ct.completed_runs(tmp_path, 12)) == set(t.runs)


def test_budget_is_honoured_and_branch_epochs_count(table):
    space = simulate.table_space(table.meta, 0, 0, max_concurrent=2)
    method = simulate.make_method("default", table.meta, 0, 0, 360, 2)
    rec = sim_engine.simulate(method, sim_engine.Lookup(table, 0, method.space), 2, 360)
    assert 360 <= rec.spent < 360 + 1 + 2  # stops at the epoch that spends it (one branch more)
    assert rec.trials > 30 * 12 / 360 * 12  # saved epochs bought more trials than full trainings
    fifo = simulate.make_method("random_fifo", table.meta, 0, 0, 120, 2)
    rec = sim_engine.simulate(fifo, sim_engine.Lookup(table, 0, space), 2, 120)
    # New trials start while budget is left; the ones still training when it runs out stop.
    assert rec.spent == 120 and rec.trials >= 10 and len(rec.finals) < rec.trials


def test_default_stops_trials_at_its_rungs_with_branch_results(table):
    # the default on a step schedule: plain rungs at the lr drop (epoch 6), no branch
    method = simulate.make_method("default", table.meta, 0, 0, 240, 2)
    job = method.ask()
    assert job.branch_at == frozenset() and method.space.search.grace_period == 6
    method = simulate.make_method("default:grace_period=2,branch_epochs=2", table.meta, 0, 0,
                                  240, 2)
    job = method.ask()
    assert job.branch_at == frozenset({2, 6}) and job.branch_length == 2
    rec = sim_engine.simulate(method, sim_engine.Lookup(table, 0, method.space), 2, 240)
    last = {}
    for _, _, tid, epoch, _, _ in rec.events:
        last[tid] = epoch
    assert set(last.values()) <= {2, 6, 12} and 2 in last.values() and 12 in last.values()


def test_with_brackets_each_trial_branches_and_stops_at_its_own_brackets_rungs(table):
    from sim_methods import TuneSearch

    from gunn_search.space.rungs import bracket_of, bracket_rungs

    space = simulate.table_space(table.meta, 0, 0, brackets=2, grace_period=2, branch_epochs=2,
                                 reduction_factor=3, num_samples=24, max_concurrent=2)
    method = TuneSearch(space)  # 24 trials, each ended by the scheduler (no budget cut)
    jobs = {}
    ask = method.ask
    method.ask = lambda: jobs.setdefault(len(jobs), ask())
    rec = sim_engine.simulate(method, sim_engine.Lookup(table, 0, space), 2, 10_000)
    last = {}
    for _, _, tid, epoch, _, _ in rec.events:
        last[tid] = epoch
    brackets = {t: bracket_of(t, space.search, 12) for t in last}
    assert len(last) == 24 and set(brackets.values()) == {0, 1}
    for t, b in brackets.items():  # a trial stops only at its bracket's rungs or the end
        assert last[t] in {*bracket_rungs(2, 3, 12, b), 12}
    for job in jobs.values():  # and branches at its bracket's rungs
        if job not in (None, "finished"):
            assert job.branch_at == set(bracket_rungs(2, 3, 12, brackets[job.handle]))


@pytest.mark.parametrize("key", ["optuna_hyperband", "optuna_sha", "topk_1epoch"])
def test_peers_run_on_the_table(table, key):
    row = simulate.run_one((str(table.folder), key, 1, 5, 2))
    assert row["train_seed"] == 1 and row["spent"] >= 60 and row["best_final"] is not None


def _ends(method, table, budget):
    """A search of `method` on training seed 1: its record and the epoch each trial it ended
    stopped at (a trial still training when the budget runs out is never ended)."""
    ends, end = {}, method.end

    def record(handle, metrics, completed):
        ends[handle] = metrics["epoch"]
        end(handle, metrics, completed)

    method.end = record
    return sim_engine.simulate(method, sim_engine.Lookup(table, 1, method.space), 2, budget), ends


@pytest.mark.parametrize("key, package", [("dehb", "dehb"), ("synetune_asha", "syne_tune"),
                                          ("synetune_bohb", "syne_tune")])
def test_other_packages_peers_run_on_the_table(table, key, package):
    pytest.importorskip(package)  # the bench extra; CI installs only the test extra
    row = simulate.run_one((str(table.folder), key, 1, 5, 2))
    assert row["train_seed"] == 1 and row["spent"] >= 60 and row["best_final"] is not None
    again, other = (simulate.run_one((str(table.folder), key, s, 5, 2)) for s in (1, 2))
    assert again["events"] == row["events"] != other["events"]  # seeded by the search seed


def test_dehb_trains_each_evaluation_from_scratch_to_its_fidelity(table):
    pytest.importorskip("dehb")
    import glob
    import tempfile

    left = set(glob.glob(f"{tempfile.gettempdir()}/gunn-dehb-sim-*"))
    method = simulate.make_method("dehb", table.meta, 1, 1, 120, 2)
    assert set(glob.glob(f"{tempfile.gettempdir()}/gunn-dehb-sim-*")) == left  # removed
    rec, ends = _ends(method, table, 120)
    # eta 3 on 12 epochs: rungs 12/9 (rounded to 1), 4 and 12; each from epoch 0, paid in full
    assert set(ends.values()) == {1, 4, 12}
    assert rec.spent == 120 and rec.trials > 120 / 12
    assert len(method.dehb.history) == len(ends)  # every evaluation told as it ended


@pytest.mark.parametrize("key", ["synetune_asha", "synetune_bohb"])
def test_synetune_stops_trials_at_its_rungs(table, key):
    pytest.importorskip("syne_tune")
    method = simulate.make_method(key, table.meta, 1, 1, 120, 2)
    rec, ends = _ends(method, table, 120)
    # grace period 1, reduction factor 3, max_t 12: rungs 1, 3, 9; STOP at 12
    assert set(ends.values()) <= {1, 3, 9, 12} and {1, 12} <= set(ends.values())
    assert method.removed == set(ends)  # every end was a STOP, removed as the Tuner does
    assert set(method.scheduler.trial_info) == set(method.trials) - set(ends)  # still training


def test_synetune_bohb_samples_from_its_kde_once_it_fits_one(table):
    """0.16's KDE fits only once its good and bad sets each have more points than the space's 9
    dimensions (67 trials here): BOHB is ASHA's random search until then, its model after."""
    pytest.importorskip("syne_tune")
    asha, bohb = (simulate.make_method(k, table.meta, 0, 0, 240, 2)
                  for k in ("synetune_asha", "synetune_bohb"))
    a, _ = _ends(asha, table, 240)
    b, _ = _ends(bohb, table, 240)
    assert a.events[:100] == b.events[:100] and a.events != b.events
    assert bohb.scheduler.searcher.searcher.good_kde is not None


def test_cli_rows_and_target(table, tmp_path, capsys):
    out = tmp_path / "sim.json"
    rc = simulate.main(["--table", str(table.folder), "--methods", "default", "topk_1epoch",
                        "--budget-trainings", "4", "--search-seeds", "0-3", "--workers", "1",
                        "--json", str(out)])
    assert rc == 0
    import json

    data = json.loads(out.read_text())
    fifo = sorted(r["best_final"] for r in data["rows"] if r["method"] == "random_fifo")
    assert data["target"] == pytest.approx((fifo[1] + fifo[2]) / 2)
    keys = {"method", "search_seed", "epochs_to_target", "best_final", "budget_epochs"}
    assert all(keys <= set(r) for r in data["rows"])
    assert "| default |" in capsys.readouterr().out


def test_unknown_method_is_one_line(table, capsys):
    assert simulate.main(["--table", str(table.folder), "--methods", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_a_variant_of_the_default_searches_with_its_settings(table, tmp_path, capsys):
    """`default:grace_period=4,branch_epochs=0` is gunn-search with those search settings: its
    trials stop only at its own rungs (4 and 12 with rf 3), and the p-values test it against the
    others when it is the reference."""
    key = "default:grace_period=4,branch_epochs=0"
    base, settings = simulate.split_variant(key)
    assert (base, settings) == ("default", {"grace_period": 4, "branch_epochs": 0})
    out = tmp_path / "sim.json"
    rc = simulate.main(["--table", str(table.folder), "--methods", "default", key,
                        "--reference", key, "--budget-trainings", "4", "--search-seeds", "0-3",
                        "--workers", "1", "--json", str(out)])
    assert rc == 0
    import json

    rows = [r for r in json.loads(out.read_text())["rows"] if r["method"] == key]
    stops = {e[2] for r in rows for e in r["events"]}
    # a stopped trial's last epoch is a rung; every trial reaches the first rung
    assert stops <= set(range(1, 13)) and min(
        max(e[2] for e in r["events"]) for r in rows) >= 4
    text = capsys.readouterr().out
    assert f"p ({key} fewer epochs)" in text and f"| {key} |" in text


def test_a_bad_variant_is_one_line(table, capsys):
    assert simulate.main(["--table", str(table.folder), "--methods",
                          "default:grace_period=0"]) == 2
    assert "search.grace_period" in capsys.readouterr().err
    assert simulate.main(["--table", str(table.folder), "--methods",
                          "optuna_sha:grace_period=2"]) == 2
    assert "only default and random_fifo" in capsys.readouterr().err


@pytest.mark.slow
def test_simulator_decides_as_the_real_search():
    """A real search (Ray Tune, the real trainable) replayed into the simulator's TuneSearch:
    the same suggestions and the same stops, rung by rung."""
    import sim_check

    space = sim_check.check_space(epochs=4, samples=6, seed=3)
    log = sim_check.run_real(space)
    suggestions, decisions, bad = sim_check.replay(space, log)
    assert suggestions == 6 and decisions >= 12
    assert any(k == "complete" and d["epoch"] < 4 for k, _, d in log)  # a rung stopped one
    assert bad == []


@pytest.mark.slow
def test_recorder_resumes_where_it_stopped(tmp_path, capsys):
    """Two tiny runs recorded; one cut by a 'kill' (its rows removed, a half line left): the
    recorder trains that one again and nothing else; another problem in the folder is refused."""
    import record_curves

    out = tmp_path / "t"
    argv = ["--configs", "2", "--seeds", "0", "--epochs", "2", "--train-fraction", "0.2",
            "--branch-at", "1", "--branch-lengths", "0.5", "--workers", "1", "--out", str(out)]
    assert record_curves.main(argv) == 0
    t = ct.load_table(out)
    assert set(t.runs) == {(0, 0), (1, 0)}
    first = t.runs[(1, 0)]
    assert first[0][ct.anneal_col(0.5)] is not None and first[1][ct.anneal_col(0.5)] is None
    assert all(r["seconds"] > 0 and r["train_loss"] is not None for r in first)
    lines = (out / "curves.csv").read_text().splitlines()
    keep = [ln for ln in lines if not ln.startswith("1,")]
    (out / "curves.csv").write_text("\n".join(keep) + "\n1,0,1,0.3")  # run 1 cut mid-write
    capsys.readouterr()
    assert record_curves.main(argv) == 0
    assert "1 runs recorded" in capsys.readouterr().err  # run 0 kept, run 1 trained again
    again = ct.load_table(out)
    assert set(again.runs) == {(0, 0), (1, 0)}
    assert [r["val_acc"] for r in again.runs[(1, 0)]] == [r["val_acc"] for r in first]
    assert again.runs[(0, 0)] == t.runs[(0, 0)]
    assert record_curves.main([*argv[:-2], "--out", str(out), "--epochs", "3"]) == 2
    assert "holds another problem" in capsys.readouterr().err


def test_the_free_oracle_share_counts_only_searches_where_a_third_is_possible():
    """Budget 10 trainings of 12 epochs. The oracle trains one configuration (12 epochs):
    random + FIFO reaching the target after 48 epochs makes a third possible (12/48), after 24
    not; the default's share is taken over the first search only."""
    def row(m, s, e):
        return {"method": m, "search_seed": s, "epochs_to_target": e, "best_final": 0.9,
                "budget_epochs": 120, "budget_trainings": 10}

    rows = [row("random_fifo", 0, 48), row("random_fifo", 1, 24), row("default", 0, 12),
            row("default", 1, 30)]
    lines = simulate.summary(rows, ["default", "random_fifo"], 120)
    assert lines[0].startswith("free oracle: a third of random + FIFO's epochs is possible in "
                               "1 of 2 searches (its median share there 0.250)")
    default = next(ln for ln in lines if ln.startswith("| default |"))
    assert "| 0.250 |" in default  # 12 of 48, the second search left out


def test_sweep_compares_each_candidate_with_optuna_and_the_peers(table, tmp_path, capsys):
    """sweep_defaults.py: one row per candidate and setting, p-values against Optuna TPE +
    HyperbandPruner, the peer most likely better, and the goal judged from them."""
    import json

    import sweep_defaults

    out = tmp_path / "sweep.json"
    rc = sweep_defaults.main(["--tables", str(table.folder), "--candidates", "default",
                              "default:grace_period=4,branch_epochs=0", "--peers", "topk_1epoch",
                              "--budgets", "4", "--concurrency", "2", "--search-seeds", "0-5",
                              "--workers", "1", "--json", str(out)])
    assert rc == 0
    (setting,) = json.loads(out.read_text())["settings"]
    assert [r["candidate"] for r in setting["results"]] == [
        "default", "default:grace_period=4,branch_epochs=0"]
    for r in setting["results"]:
        assert r["searches"] == 6 and 0 <= r["p_fewer_epochs_than_reference"] <= 1
        assert r["peer_most_likely_better_final"] in (None, "random_fifo", "optuna_hyperband",
                                                      "topk_1epoch")
        assert r["goal_met"] == (r["p_fewer_epochs_than_reference"] < 0.05
                                 and r["reached"] >= r["reference_reached"]
                                 and r["p_peer_better_final"] >= 0.05)
    assert {r["method"] for r in setting["rows"]} == {
        "default", "default:grace_period=4,branch_epochs=0", "random_fifo", "optuna_hyperband",
        "topk_1epoch"}
    assert "| `default` |" in capsys.readouterr().out
    assert sweep_defaults.main(["--tables", str(table.folder), "--candidates", "optuna_sha"]) == 2


def test_real_searches_under_a_budget_resume_where_they_stopped(tmp_path):
    """efficiency_budget.py: a run cut after two searches, run again with the same --json and
    budget, runs only the searches it lacks, against the target it recorded."""
    import json

    import efficiency_budget as eb

    out = tmp_path / "real.json"
    ran = []

    def run(m, seed):
        ran.append((m, seed))
        if len(ran) == 3:
            raise KeyboardInterrupt  # the run is stopped during its third search
        return {"method": m, "search_seed": seed, "best_final": 0.5 + seed / 10,
                "trials": 3, "spent": 12.0, "wall": 1.0, "budget_epochs": 24,
                "events": [[12.0, 1.0, 12, 0.5 + seed / 10, True]]}

    with pytest.raises(KeyboardInterrupt):
        eb.run_searches(["default", "random_fifo"], [0, 1], 24, 0.55, [], out, run)
    target, rows = eb.recorded(out, 24)
    assert target == 0.55 and [(r["method"], r["search_seed"]) for r in rows] == [
        ("default", 0), ("random_fifo", 0)]
    assert eb.recorded(out, 36) == (None, [])  # another budget: nothing to resume
    ran.clear()
    rows = eb.run_searches(["default", "random_fifo"], [0, 1], 24, target, rows, out, run)
    assert ran == [("default", 1), ("random_fifo", 1)]
    saved = json.loads(out.read_text())["rows"]
    assert len(saved) == 4 and [r["epochs_to_target"] for r in saved] == [None, None, 12.0, 12.0]
    lines = eb.seed_table(saved, ["default", "random_fifo"])
    assert lines[-2:] == ["| 0 | never / 0.5000 / 3 | never / 0.5000 / 3 |",
                          "| 1 | 12 / 0.6000 / 3 | 12 / 0.6000 / 3 |"]


def test_optuna_on_its_own_is_the_same_search_on_every_run(table):
    """The Optuna peer's brackets follow its study's name (HyperbandPruner hashes it): a seeded
    search run twice makes the same trials and stops."""
    def events():
        method = simulate.make_method("optuna_hyperband", table.meta, 0, 3, 120, 2)
        return sim_engine.simulate(method, sim_engine.Lookup(table, 0, method.space), 2, 120).events

    assert events() == events()
