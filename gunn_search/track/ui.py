"""What a person sees of a search in the MLflow web UI.

MLflow 3 opens an experiment on its GenAI pages (an empty traces "Overview"), nests the trials
under the search's parent run and shows no metric or param column in the runs table. A search
therefore leaves, besides its runs:

- experiment tags: `mlflow.experimentKind` = `custom_model_development` (the "Model training"
  kind, as the UI's own kind selector writes it; MLflow 3.3 picks the experiment's pages by
  it, 3.17 by the `workflowType` URL parameter or the person's last choice) and
  `mlflow.experiment.primaryMetric.name` = `val_acc` (the metric the runs view's charts put
  first);
- a shared view of its trials, the experiment tag `mlflow.sharedViewState.<key>`: the trials of
  this search only (filter on `mlflow.parentRunId`), best val_acc first (a sort other than by
  start time lists them flat, not under the parent), with the columns status, val_acc,
  `cost.params`, each searched stage's N and P and the other searched values, status and
  val_acc first. The UI opens it from the link `runs_link` prints
  (`#/experiments/<id>/runs?workflowType=machine_learning&viewStateShareKey=<key>`;
  `workflowType` picks the "Model training" pages where the kind tag no longer does);
- on the parent run, a description (`mlflow.note.content`, shown on its Overview page): the
  best trials as a Markdown table (`trials_note`).

The view state is plain JSON, which MLflow 3.x reads from that tag (3.17's saved views also
accept an envelope with a name, which older versions cannot read). Checked against MLflow
3.17.2's web app (mlflow/server/js/build: `getExperimentPageRoute`'s `viewStateShareKey`, the
`workflowType` URL parameter, the view-state keys `selectedColumns`, `columnOrder`,
`columnWidths`) and 3.3.2's; `tests/test_ui.py` drives the real UI in a browser.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from gunn_search.status import METRIC
from gunn_search.tags import (KIND_TAG, PARENT_TAG, PRIMARY_METRIC_TAG, STATUS_TAG,
                              VIEW_TAG_PREFIX)

MODEL_TRAINING = "custom_model_development"
EXPERIMENT_TAGS = {KIND_TAG: MODEL_TRAINING, PRIMARY_METRIC_TAG: METRIC}
NOTE_ROWS = 10
MAX_NOTE = 7900


def view_key(parent_run_id: str) -> str:
    """The share key of a search's trials view."""
    return f"gunn-search-{parent_run_id}"


def shown_params(space) -> list[str]:
    """The trial params worth a column, as the trials log them: N and P of every stage that is
    searched (a stage may sample the segment width n or an N-dependent P, both logged as N and
    P), then the other searched values in the space's order."""
    searched = list(space.searched())
    stages = [i for i in range(len(space.stage_forms))
              if any(p.startswith(f"model.stages.{i}.") for p in searched)]
    shapes = [f"model.stages.{i}.{d}" for i in stages for d in "NP"]
    rest = [p for p in searched if not p.startswith("model.stages.")
            or p.rsplit(".", 1)[-1] in ("K", "M")]
    return shapes + rest


def trials_view(parent_run_id: str, params: Sequence[str]) -> dict[str, Any]:
    """The runs-table state of one search's trials (MLflow's experiment-page view state)."""
    def col(kind: str, key: str) -> str:
        return f"{kind}.`{key}`"

    columns = [col("tags", STATUS_TAG), col("metrics", METRIC), col("metrics", "cost.params"),
               *(col("params", p) for p in params), col("attributes", "Duration")]
    order = [col("attributes", "Run Name"), *columns[:-1], "runDateAndNestInfo", "duration"]
    return {
        "searchFilter": f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        "orderByKey": col("metrics", METRIC),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "selectedColumns": columns,
        "columnOrder": order,
        "columnWidths": {col("tags", STATUS_TAG): 150, col("metrics", METRIC): 150},
    }


def write_trials_view(client, experiment_id: str, parent_run_id: str, params: Sequence[str]) -> str:
    """Store the search's trials view on its experiment; returns its share key."""
    key = view_key(parent_run_id)
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key,
                              json.dumps(trials_view(parent_run_id, params)))
    return key


def runs_link(base_url: str, experiment_id: str, parent_run_id: str) -> str:
    """The UI address of a search's trials view, e.g. `http://127.0.0.1:5000/#/experiments/1/
    runs?workflowType=machine_learning&viewStateShareKey=gunn-search-<parent run id>`."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={view_key(parent_run_id)}")


def run_link(base_url: str, experiment_id: str, run_id: str) -> str:
    """The UI address of one run's page, in the "Model training" pages.

    MLflow 3.17 takes the pages' kind from the `workflowType` URL parameter, else from the
    browser's last choice of the sidebar switch (local storage, default GenAI), and the runs
    table's links to a run page carry no parameter: a run opened from the trials view follows
    the browser's choice. A link gunn-search prints or writes carries the parameter."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
            "?workflowType=machine_learning")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def trials_note(rows: Sequence[Mapping[str, Any]], params: Sequence[str],
                top: int = NOTE_ROWS) -> str:
    """The parent run's description: a line on the search, then its best trials as a Markdown
    table (trial, status, val_acc, epochs, N/P per searched stage, the other searched values).
    `rows` hold `trial`, `status`, `val_acc` (the best epoch's; None without a result),
    `epochs` and `config` (the trial's values by param); `params` as `shown_params` gives."""
    ranked = sorted(rows, key=lambda r: (r.get("val_acc") is None, -(r.get("val_acc") or 0.0),
                                         str(r["trial"])))
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    line = f"**{len(rows)} trial{'' if len(rows) == 1 else 's'}** ({', '.join(f'{n} {s}' for s, n in counts.items())})"
    if ranked and ranked[0].get("val_acc") is not None:
        line += f", best val_acc {_cell(ranked[0]['val_acc'])} (`trial-{ranked[0]['trial']}`)"
    shown = ranked[:top]
    line += (f". The best {len(shown)} by val_acc:" if len(shown) < len(rows)
             else ". By val_acc:")
    stages = [p[:-2] for p in params if p.startswith("model.stages.") and p.endswith(".N")]
    others = [p for p in params if p not in {f"{s}.{d}" for s in stages for d in "NP"}]
    header = ["trial", "status", "val_acc", "epochs", *(["N/P per stage"] if stages else []),
              *(p.removeprefix("model.") for p in others)]
    lines = [line, "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in shown:
        cfg = r.get("config") or {}
        shapes = " ".join(f"{_cell(cfg.get(s + '.N', '?'))}/{_cell(cfg.get(s + '.P', '?'))}"
                          for s in stages)
        cells = [f"`{r['trial']}`", _cell(r["status"]), _cell(r.get("val_acc")),
                 _cell(r.get("epochs")), *([shapes] if stages else []),
                 *(_cell(cfg.get(p)) for p in others)]
        lines.append("| " + " | ".join(cells) + " |")
    note = "\n".join(lines) + "\n"
    if len(note) > MAX_NOTE and top > 1:  # a run tag holds at most 8000 characters
        return trials_note(rows, params, top // 2)
    return note[:MAX_NOTE]
