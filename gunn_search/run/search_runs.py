"""The Tune callback that writes a search to MLflow, in the driver.

Child run per trial (the bookkeeping of gunn_search.track.trial_runs): its training config's
dotted paths as params (the same names and values a `gunn-train` run of the exported config
logs), that config as the artifact `train_config.yaml`, its price (`cost.*`) and per-epoch
metrics (step = epoch), and a final status tag (a `TrialStatus`: completed, stopped by ASHA,
errored, non-finite loss, oom, rejected by budget; the epoch or error in their own tags). A
trial retried after an error continues its run. The parent run gets the running best and, at the
end, the best trial's config (gunn_search.results.best), the search plots and a description.

A search stopped by Ctrl-C or SIGTERM (gunn_search.run.interrupts) ends differently: the trials it
cut are `interrupted` and their runs KILLED, the parent run is KILLED with the signal and its
time as tags, and nothing of a finished search (best config, plots) is written. `--resume`
sets each run RUNNING again when its trial starts again.

It lives in run/, not track/: it joins the run's interrupts, study and timing to the tracking,
and run is the layer that may import track (the contract in pyproject.toml).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from gunn_search.results import pareto
from gunn_search.results.best import best_trial
from gunn_search.status import ANNEALED_METRIC, METRIC, Kind, TrialStatus
from gunn_search.run import interrupts, study, timing
from gunn_search.space import trial_config
from gunn_search.track import store as tr
from gunn_search.track import ui as mlflow_ui
from gunn_search.tags import (BEST_RUN_TAG, BEST_TRIAL_TAG, EPOCHS_REDONE_TAG, ERROR_TAG,
                              IMPORTANCES_TAG, INTERRUPTED_AT_TAG, INTERRUPTED_BY_TAG,
                              NOTE_TAG, PARETO_TAG, ROLE_TAG)
from gunn_search.track.trial_runs import TrialRuns, epoch_metrics
from gunn_search.track.uri import shown_uri

# Where this module was before it moved into run/ (the layers of pyproject.toml). A search's Tune
# state pickles its callback by the module's name, so a search saved then is resumed only if that
# name still finds this module (`answer_to_former_name`, before `Tuner.restore`).
FORMER_NAME = "gunn_search.track.search_runs"


def answer_to_former_name() -> None:
    """Let a pickle that names `FORMER_NAME` find this module (no module is left at the old
    path: track/ must not import run/)."""
    sys.modules.setdefault(FORMER_NAME, sys.modules[__name__])


class MLflowSearchCallback(TrialRuns):
    """Parent/child MLflow runs for one search. Picklable: Tune stores it with the experiment."""

    SETTINGS = TrialRuns.SETTINGS + ("space", "space_path")
    SPOOL_PREFIX = "gunn-search-spool"

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, space,
                 space_path: str):
        self.space = space
        self.space_path = space_path
        super().__init__(tracking_uri, experiment_id, parent_run_id)

    def setup(self, **info):
        super().setup(**info)
        # The Optuna study's trials carry their run ids (gunn_search.run.study).
        study.publish_run_ids(self.run_id)

    def run_id(self, trial_id: str) -> str | None:
        """The MLflow run id of a trial once the store has given it one, else None."""
        run_id = self.runs.get(trial_id)
        return None if run_id is None else self.client.known(run_id)

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self.histories: dict[str, list[dict]] = {}
        self.logged_upto: dict[str, int] = {}  # last epoch already in MLflow (resumed runs)
        self.redone: dict[str, int] = {}
        self.best: float | None = None
        self.n_results = 0
        # (MLflow seconds, driver CPU seconds) as each trial ended, under GUNN_SEARCH_TIMING
        self._marks: list[tuple[float, float]] = []
        self._preloading: threading.Thread | None = None

    # --- a search's trials --------------------------------------------------------------------
    def run_name(self, trial) -> str:
        return f"trial-{trial.trial_id}"

    def run_tags(self, trial) -> dict:
        return {ROLE_TAG: "trial"}

    def train_config(self, trial):
        return trial_config(self.space, dict(trial.config))

    def existing_runs(self, client) -> dict:
        return tr.child_runs(client, self.experiment_id, self.parent_run_id)

    def resumed(self, client) -> None:
        for tid, run_id in self.runs.items():
            hist = client.get_metric_history(run_id, "train_loss")
            self.logged_upto[tid] = max((m.step for m in hist), default=0)
        self.best = client.get_run(self.parent_run_id).data.metrics.get("best_val_acc")

    def register_abort(self, abort) -> None:
        interrupts.on_abort(abort)

    # --- Tune hooks -----------------------------------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id, status = self._result(trial, result)
        if status in (TrialStatus.REJECTED, TrialStatus.OOM):
            if result.get("error"):
                tr.batch(self.client, run_id, tags={ERROR_TAG: result["error"]})
            return
        epoch = int(result.get("epoch", 0))
        if epoch <= self.logged_upto.get(trial.trial_id, 0):
            # Resumed from a checkpoint older than the epochs already logged (the driver died
            # before Tune saved its state): the epoch is trained again but logged once.
            self.redone[trial.trial_id] = self.redone.get(trial.trial_id, 0) + 1
            tr.batch(self.client, run_id, tags={EPOCHS_REDONE_TAG: self.redone[trial.trial_id]})
            return
        metrics = epoch_metrics(result, status, tr.EPOCH_METRICS)
        tr.batch(self.client, run_id, metrics=metrics, step=epoch)
        self.histories.setdefault(trial.trial_id, []).append({"epoch": epoch, **metrics})
        if status != TrialStatus.NONFINITE and METRIC in metrics:
            self.n_results += 1
            if self.best is None or metrics[METRIC] > self.best:
                self.best = metrics[METRIC]
                tr.batch(self.client, self.parent_run_id,
                         metrics={"best_val_acc": self.best}, step=self.n_results)

    def on_trial_complete(self, iteration, trials, trial, **info):
        super().on_trial_complete(iteration, trials, trial, **info)
        self._preload_plotting_if_idle(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        super().on_trial_error(iteration, trials, trial, **info)
        self._preload_plotting_if_idle(trials)

    def on_experiment_end(self, trials, **info):
        interrupt = interrupts.received()
        if interrupt is not None:
            self.close_interrupted(trials, interrupt)
        else:
            self.finalize(trials)

    # --- helpers --------------------------------------------------------------------------------
    def _preload_plotting_if_idle(self, trials) -> None:
        """Import what the final plots need, in the background, once a trial slot stays free.

        The plots import matplotlib and Optuna's fANOVA (scikit-learn, scipy): 1.5-2 s at the
        end of every search on the 2-core CPU VM, with all trials done. Once every trial has
        been sampled and one has just ended, its slot (a core) has nothing left to run: import
        them then, so the search's end does not wait for them.
        """
        if self._preloading is not None or len(trials) < self.space.search.num_samples:
            return
        if any(t.status == "PENDING" for t in trials):
            return
        self._preloading = threading.Thread(target=_import_plotting, name="plots-preload",
                                            daemon=True)
        self._preloading.start()

    def close_interrupted(self, trials, interrupt: interrupts.Interrupt) -> None:
        """The end of a search a signal stopped: the trials it cut are `interrupted`, KILLED
        (`close_cut`); trials that ended while a killed driver was down are closed as at a
        normal end; the parent run is KILLED, tagged with the signal and its time."""
        self.client.flush()
        self.drop_unsaved(trials)
        for t in self.close_cut(trials):
            self.close_if_ended(t)
        mark_killed(self.client, self.parent_run_id, interrupt)

    def _finish(self, trial, status: TrialStatus, mlflow_status: str,
                tags: dict | None = None) -> None:
        super()._finish(trial, status, mlflow_status, tags)
        if timing.enabled():
            self._marks.append((self.client.busy_s, time.process_time()))

    def finalize(self, trials) -> None:
        """Close every trial's run, put the best config and the plots on the parent, end it.

        After a resume, trials that ended while the driver was down get their final status here
        (no run is left RUNNING), and histories are read back from MLflow.
        """
        from gunn_search.results.export import export_config
        from gunn_search.results.plots import TrialRecord, write_search_plots
        from gunn_search.space import distributions as dist

        client = self.client
        steps = timing.Steps()
        before = (client.calls, client.busy_s)  # the trial phase's MLflow calls
        with steps.step("flush"):
            client.flush()
            self.drop_unsaved(trials)
        records, candidates = [], []
        with steps.step("records"):
            for t in trials:
                status = self.close_if_ended(t)
                hist = self._history(t)
                vals = [h[METRIC] for h in hist if METRIC in h]
                value = max(vals) if vals else None
                records.append(TrialRecord(trial_id=t.trial_id, params=self._searched_values(t),
                                           history=hist, status=status, value=value))
                candidates.append({"trial": t, "trial_id": t.trial_id, "status": status,
                                   METRIC: value})
        with steps.step("best config"):
            best = best_trial(candidates)
            if best is not None:
                t, value = best["trial"], best[METRIC]
                run_id = client.resolve(self.runs.get(t.trial_id, ""))
                cfg = export_config(trial_config(self.space, dict(t.config)),
                                    search_run_id=self.parent_run_id, trial_run_id=run_id,
                                    experiment=None, tracking_uri=None)
                self._log_yaml(self.parent_run_id, cfg.model_dump(mode="json"),
                               "best_config.yaml")
                tr.batch(client, self.parent_run_id,
                         tags={BEST_TRIAL_TAG: t.trial_id, BEST_RUN_TAG: run_id},
                         metrics={"best_val_acc": value}, step=self.n_results + 1)
            if len(self.space.search.objective_list) > 1:
                self._log_pareto(trials)
        with steps.step("plots"):
            try:
                from gunn_search.results.search_records import (IMPORTANCE_METRIC,
                                                                search_importances)

                imp = search_importances(records, self.space)
                # The numbers behind the figure, on the parent run: `gunn-search importances`
                # recomputes the same ones from MLflow later.
                if imp:
                    tr.batch(client, self.parent_run_id, metrics={
                        IMPORTANCE_METRIC + p: v for p, v in imp.items()},
                        step=self.n_results + 1)
                dists = {p: dist.to_optuna(d) for p, d in self.space.searched().items()}
                paths = write_search_plots(records, self._spool() / "plots", distributions=dists,
                                           maximize=self.space.search.mode == "max",
                                           importances=imp)
            except Exception as e:  # plots are a convenience: never fail a finished search
                print(f"gunn-search: plots failed: {tr.shown_line(str(e))}", file=sys.stderr)
                paths = []
        with steps.step("plot upload"):
            for p in paths:
                client.call("log_artifact", self.parent_run_id, str(p), "plots")
            from gunn_search.results.importances import importance_trials, too_few
            fid = importance_trials(records)
            tr.batch(client, self.parent_run_id, tags={
                IMPORTANCES_TAG: f"importances: {fid.label}" if fid else too_few()})
        with steps.step("note"):
            self._write_note(records, trials)
        with steps.step("end flush"):
            client.call("set_terminated", self.parent_run_id, "FINISHED")
            client.flush()
        if client.pending:
            print(f"gunn-search: {len(client.pending)} MLflow writes could not be delivered to "
                  f"{shown_uri(self.tracking_uri)}: " + ", ".join(sorted({m for m, _, _ in client.pending})),
                  file=sys.stderr)
        else:
            with steps.step("spool cleanup"):
                self.drop_spool()
        timing.report({"trials": len(trials), "mlflow_calls_trials": before[0],
                       "mlflow_s_trials": round(before[1], 4), "mlflow_calls": client.calls,
                       "mlflow_s": round(client.busy_s, 4),
                       "finalize": {k: round(v, 4) for k, v in steps.seconds.items()},
                       **timing.quarters(self._marks, ("mlflow_s", "cpu_s"))})

    def _log_pareto(self, trials) -> None:
        """Tag each trial on or off the front; the front as a table and a plot on the parent."""
        objectives = pareto.objectives_of(self.space.search)
        rows = [pareto_row(t, self.statuses.get(t.trial_id), self._history(t)) for t in trials]
        finished = [r for r in rows if r["status"].kind is Kind.COMPLETED]
        on_front = {r["trial"] for r in pareto.front_rows(finished, objectives)}
        for t in trials:
            if t.trial_id in self.runs:
                tr.batch(self.client, self.runs[t.trial_id],
                         tags={PARETO_TAG: str(t.trial_id in on_front).lower()})
        d = Path(tempfile.mkdtemp(dir=self._spool()))
        text = pareto.table([r for r in finished if r["trial"] in on_front], objectives)
        (d / "pareto.md").write_text(f"# Pareto front ({len(on_front)} of {len(finished)} "
                                     f"finished trials)\n\n{text}\n")
        self.client.call("log_artifact", self.parent_run_id, str(d / "pareto.md"))
        plottable = [r for r in finished if all(isinstance(r.get(o.metric), (int, float))
                                                for o in objectives)]
        if plottable:
            try:
                path = pareto.plot(plottable, on_front, objectives, d / "pareto_front.png")
                self.client.call("log_artifact", self.parent_run_id, str(path), "plots")
            except Exception as e:  # a plot is a convenience
                print(f"gunn-search: Pareto plot failed: {tr.shown_line(str(e))}", file=sys.stderr)

    def _searched_values(self, trial) -> dict:
        """The trial's values of the searched dimensions, as numbers where they are numbers."""
        return {p: trial.config[p] for p in self.space.searched() if p in trial.config}

    def _history(self, trial) -> list[dict]:
        hist = self.histories.get(trial.trial_id, [])
        if hist and hist[0].get("epoch") == 1:
            return hist
        try:  # a resumed search saw only part of it: read it back, rung results too
            run_id = self.client.resolve(self.runs[trial.trial_id])
            by_epoch: dict[int, dict] = {}
            for key in (METRIC, ANNEALED_METRIC):
                for m in self.client.client.get_metric_history(run_id, key):
                    by_epoch.setdefault(m.step, {"epoch": m.step})[key] = m.value
            return [by_epoch[e] for e in sorted(by_epoch) if METRIC in by_epoch[e]]
        except Exception:
            return hist

    def _write_note(self, records, trials) -> None:
        """The parent run's description in the MLflow UI: its best trials as a Markdown table."""
        configs = {t.trial_id: dict(t.config) for t in trials}
        rows = []
        for r in records:
            status = TrialStatus(r.status)
            rows.append({"trial": r.trial_id, "status": status, "config": configs.get(r.trial_id),
                         "val_acc": r.value if status.has_result else None,
                         "epochs": max((h.get("epoch", 0) for h in r.history), default=0)})
        try:
            note = mlflow_ui.trials_note(rows, mlflow_ui.shown_params(self.space))
        except Exception as e:  # a description is a convenience
            print(f"gunn-search: run description failed: {tr.shown_line(str(e))}", file=sys.stderr)
            return
        tr.batch(self.client, self.parent_run_id, tags={NOTE_TAG: note})



def mark_killed(client: tr.BufferedClient, run_id: str,
                interrupt: interrupts.Interrupt | None) -> None:
    """A search's parent run stopped by a signal: KILLED, tagged with the signal and when."""
    if interrupt is not None:
        tr.batch(client, run_id, tags={INTERRUPTED_AT_TAG: interrupt.at,
                                       INTERRUPTED_BY_TAG: interrupt.name})
    client.call("set_terminated", run_id, "KILLED")
    client.flush()


def pareto_row(trial, status, history: list[dict]) -> dict:
    """A trial's objective values: its best val_acc, its price, its last epoch's time."""
    last = trial.last_result or {}
    vals = [h[METRIC] for h in history if METRIC in h]
    row = {"trial": trial.trial_id, "status": TrialStatus(status or TrialStatus.RUNNING),
           METRIC: max(vals) if vals else None, "epoch_seconds": last.get("epoch_seconds")}
    row.update({k: v for k, v in trial.config.items() if k.startswith("cost.")})
    return row


def _import_plotting() -> None:
    t0 = time.thread_time()  # its CPU, on the timing line: it lands in the search's last trials
    try:
        import optuna.importance  # noqa: F401  (fANOVA: scikit-learn, scipy)

        import gunn_search.results.plots  # noqa: F401  (matplotlib)
    except Exception:  # finalize imports them again and reports a real failure there
        pass
    timing.add("plot_preload", time.thread_time() - t0)
