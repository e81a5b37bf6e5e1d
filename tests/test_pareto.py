"""The Pareto front (pure), and a multi-objective search on digits end to end: Ray trials, a real
MLflow store, the front tagged, tabled and plotted, and export under a cost."""

import pytest
import yaml

from gunn_search.results.pareto import Objective, crowding, dominates, front, pareto_order, table

ACC_PARAMS = [Objective("val_acc", "max"), Objective("cost.params", "min")]


def test_front_keeps_exactly_the_non_dominated_points():
    pts = [[0.9, 100], [0.8, 50], [0.85, 120], [0.9, 100], [0.7, 40], [0.6, 60]]
    # [0.85, 120] is beaten by [0.9, 100]; [0.6, 60] by [0.8, 50]; equal points both stay
    assert front(pts, ACC_PARAMS) == [0, 1, 3, 4]
    assert dominates([0.9, 100], [0.85, 120], ACC_PARAMS)
    assert not dominates([0.9, 100], [0.9, 100], ACC_PARAMS)
    assert not dominates([0.9, 100], [0.8, 50], ACC_PARAMS)


def test_pareto_order_is_rank_then_spread():
    # front: a (best acc), b, c (cheapest), d; then e, f behind it; g behind those
    pts = {"a": [0.95, 400], "b": [0.90, 200], "c": [0.60, 50], "d": [0.80, 150],
           "e": [0.85, 300], "f": [0.55, 100], "g": [0.50, 350]}
    names = list(pts)
    order = [names[i] for i in pareto_order(list(pts.values()), ACC_PARAMS)]
    assert set(order[:4]) == {"a", "b", "c", "d"} and set(order[4:6]) == {"e", "f"}
    assert order[-1] == "g"
    # the front's extremes first (infinite crowding), then the point with more room around it:
    # d sits between c and b (gaps 0.30 of 0.35 in acc, 150 of 350 in params), b between d and a
    assert set(order[:2]) == {"a", "c"} and order[2:4] == ["d", "b"]


def test_crowding_distance_gives_the_extremes_infinity():
    d = crowding([[0.0, 3.0], [1.0, 2.0], [3.0, 0.0]])
    assert d[0] == d[2] == float("inf") and d[1] == pytest.approx(3 / 3 + 3 / 3)
    assert crowding([[1.0, 1.0], [2.0, 0.0]]) == [float("inf")] * 2


def test_three_objectives_and_the_table():
    objs = ACC_PARAMS + [Objective("epoch_seconds", "min")]
    pts = [[0.9, 100, 5.0], [0.9, 100, 4.0], [0.5, 10, 9.0]]
    assert front(pts, objs) == [1, 2]
    md = table([{"trial": "a", "val_acc": 0.5, "cost.params": 10},
                {"trial": "b", "val_acc": 0.9, "cost.params": 1000}], ACC_PARAMS)
    lines = md.splitlines()
    assert lines[0] == "| trial | val_acc (max) | cost.params (min) |"
    assert lines[2].startswith("| b | 0.9000 | 1,000 |")  # most accurate first


from tests.conftest import run_cli


@pytest.mark.slow
def test_multi_objective_search_logs_the_front_and_export_respects_a_cost(tmp_path):
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr
    from gunn_search.space import resolve_space_path

    data = yaml.safe_load(resolve_space_path("smoke.yaml").read_text())
    data.update(name="pareto", epochs=2)
    data["search"].update(num_samples=4, grace_period=2, max_concurrent=2,
                          objectives=[{"metric": "val_acc", "mode": "max"},
                                      {"metric": "cost.params", "mode": "min"}])
    (tmp_path / "pareto.yaml").write_text(yaml.safe_dump(data))
    res = run_cli(["gunn-search", "--space", "pareto.yaml"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Pareto front (" in res.stdout and "| cost.params (min) |" in res.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("pareto")
    parent = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'search'")[0]
    children = client.search_runs([exp.experiment_id],
                                  f"tags.`{tr.PARENT_TAG}` = '{parent.info.run_id}'")
    assert len(children) == 4
    points = {c.info.run_id: [max(m.value for m in client.get_metric_history(c.info.run_id,
                                                                               "val_acc")),
                              c.data.metrics["cost.params"]] for c in children}
    on = {c.info.run_id for c in children if c.data.tags.get("gunn_search.pareto") == "true"}
    assert on and all(c.data.tags.get("gunn_search.pareto") in ("true", "false") for c in children)
    ids = list(points)
    expected = {ids[i] for i in front([points[i] for i in ids], ACC_PARAMS)}
    assert on == expected
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "pareto.md" in arts
    assert "plots/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id,
                                                                              "plots")}

    # export under a cost: the most accurate trial within it
    costs = sorted(p[1] for p in points.values())
    limit = int(costs[len(costs) // 2])
    res = run_cli(["gunn-search", "export", "--experiment", "pareto", "--out", "cheap.yaml",
                   "--max-params", str(limit)], tmp_path)
    assert res.returncode == 0, res.stderr
    run_id = yaml.safe_load((tmp_path / "cheap.yaml").read_text())["tracking"]["tags"][
        "gunn_search.trial_run_id"]
    within = {r: p for r, p in points.items() if p[1] <= limit}
    assert run_id in within and points[run_id][0] == max(p[0] for p in within.values())

    res = run_cli(["gunn-search", "export", "--experiment", "pareto", "--out", "none.yaml",
                   "--max-params", "1"], tmp_path)
    assert res.returncode == 2 and "no finished trial has cost.params <= 1" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "none.yaml").exists()
