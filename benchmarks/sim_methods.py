"""The searches `simulate.py` compares, each making its decisions with its own code.

- `TuneSearch`: gunn-search, as it builds its searcher and scheduler from a space file
  (`gunn_search.run.decisions.search_parts`: Optuna's searcher in a ConcurrencyLimiter, told PRUNED
  for stopped trials; ResumableASHA or FIFO), driven through Tune's interfaces in the order
  Tune's driver calls them (`TuneController._process_trial_result` and `stop_trial`, Ray 2.60):
  a result goes to the scheduler, then, unless it stopped the trial, to the searcher; a trial's
  end to the scheduler's and the searcher's `on_trial_complete` with its last result. Each
  result is what the trainable reports (`gunn_search.run.trainable.epoch_report`), with Tune's
  `training_iteration`. Keys `default` (the space as the search defaults it) and
  `random_fifo` (the same with `search.sampler: random`, `search.scheduler: fifo`).
- `OptunaPruned`: Optuna on its own, ask/tell as `peer_optuna.py` sets it up (TPESampler(seed),
  the pruner told every epoch's val_acc and asked `should_prune` between epochs; a pruned trial
  told PRUNED, a finished one its last val_acc): `optuna_hyperband` (HyperbandPruner, min
  resource 1 epoch, reduction factor 3) and `optuna_sha` (SuccessiveHalvingPruner, the same).
- `TopKOneEpoch`: random configurations trained one epoch each with half the budget, then the
  best of them by that epoch's val_acc go on to the end with the other half (the baseline Egele
  et al. 2023 found level with multi-fidelity methods; it says how hard the table is).

Other packages' searches (`sim_peers.py`; the `bench` extra installs them):
- `dehb`: automl's DEHB (`DehbPeer`) through its ask/tell interface, set up by
  `peer_dehb.py`'s own functions (`config_space`, `make_dehb`: eta 3, fidelities 1 epoch to the
  table's epochs, seeded with the search seed, its files in a temporary folder removed once it
  is built, its loguru logging off). An evaluation at fidelity f (rounded, at least 1) trains
  from scratch and stops after f epochs (a Job with `stop_at=f`, costing f epochs: DEHB does
  not continue checkpoints); it is told as it ends, fitness 1 - val_acc after its last epoch
  (val_acc 0 for a non-finite loss), cost f. One is asked whenever a slot is free, as
  `peer_dehb.py` runs it; an evaluation cut by the budget is never told.
- `synetune_asha`, `synetune_bohb`: Syne Tune 0.16's ASHA and BOHB (`SyneTunePeer`), driven as
  its Tuner drives a TrialScheduler (`suggest`, `on_trial_add` with a Syne Tune `Trial`,
  `on_trial_result` with `{epoch, val_acc}` after every epoch, a STOP ending the trial and
  `on_trial_remove`; `on_trial_complete` for a trial that ends on its own). Resource attribute
  `epoch`, max_t the table's epochs, grace period 1, reduction factor 3, val_acc maximised, one
  bracket, seeded with the search seed (and numpy's global generator, which 0.16's random
  searcher draws from: each peer's own state of it, swapped in for its calls). Both are 0.16's
  asynchronous successive halving, which only stops trials (the stopping type; 0.16 has no `type`
  argument and no promotion variant): a PAUSE is an error. The config space is
  `peer_dehb.flat_space`'s dimensions in Syne Tune's domains (`sim_peers.synetune_space`). BOHB's
  KDE fits only once its good and bad sets each hold more points than there are dimensions (with
  9 and its top 15 %: 67 trials with results); until then it draws at random, as ASHA does (the
  same trials, seed for seed). Its KDE can suggest an integer below its range (0.16's integer
  encoding): the table is looked up at the range's end.

Every peer's configuration becomes the engine's values through the space's own sampling
function (`gunn_search.space.sample`, answered by an Optuna FixedTrial), as a sampler's are.
"""

from __future__ import annotations

from types import SimpleNamespace

from sim_engine import FINISHED, Job

from gunn_search.status import METRIC


class TuneSearch:
    """gunn-search's own decisions: the searcher and scheduler `search_parts` builds."""

    def __init__(self, space, capped: bool = True):
        """`capped`: at most `search.num_samples` trials (without a budget); under a budget
        the engine ends the search, and num_samples only set TPE's start-up trials."""
        from ray.tune.schedulers import TrialScheduler

        from gunn_search.run.decisions import search_parts

        self.space = space
        self.searcher, self.scheduler = search_parts(space)
        # What Tune's controller does with the TuneConfig's metric and mode at the start.
        self.scheduler.set_search_properties(METRIC, space.search.mode)
        self.searcher.set_search_properties(METRIC, space.search.mode, {})
        self.STOP = TrialScheduler.STOP
        self.trials: dict[str, SimpleNamespace] = {}
        self.count = 0
        self.capped = capped

    def ask(self):
        from gunn_search.run.trainable import annealing_branch

        if self.capped and self.count >= self.space.search.num_samples:
            return FINISHED
        tid = f"sim{self.count:05d}"
        config = self.searcher.suggest(tid)
        if config is None:  # the ConcurrencyLimiter is full
            return None
        if config == "FINISHED":
            return FINISHED
        self.count += 1
        trial = SimpleNamespace(trial_id=tid, last_result={}, config=config)
        self.trials[tid] = trial
        self.scheduler.on_trial_add(None, trial)
        # the trial's branches, as its trainable places them (at its bracket's rungs)
        branch = annealing_branch(self.space, self.space.max_epochs, tid)
        return Job(config, branch_at=branch.at if branch else frozenset(),
                   branch_length=branch.epochs if branch else 0.0, handle=tid)

    def report(self, tid: str, epoch: int, metrics: dict) -> bool:
        from gunn_search.run.trainable import epoch_report

        trial = self.trials[tid]
        costs = {k: v for k, v in trial.config.items() if k.startswith("cost.")}
        result = {**epoch_report(metrics, self.space.max_epochs, costs),
                  "training_iteration": epoch, "trial_id": tid}
        decision = self.scheduler.on_trial_result(None, trial, result)
        if decision != self.STOP:
            self.searcher.on_trial_result(tid, result)
        trial.last_result = result
        return decision != self.STOP

    def end(self, tid: str, metrics: dict, completed: bool) -> None:
        trial = self.trials[tid]
        self.scheduler.on_trial_complete(None, trial, trial.last_result)
        self.searcher.on_trial_complete(tid, result=trial.last_result)


class OptunaPruned:
    """Optuna's TPE with a pruner, ask/tell."""

    def __init__(self, space, seed: int, pruner: str):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        max_epochs = space.max_epochs
        if pruner == "hyperband":
            p = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                               reduction_factor=3)
        else:
            p = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
        # A study name of its own: HyperbandPruner gives a trial its bracket by a hash of the
        # study's name and the trial's number, and Optuna's default name is a fresh uuid, which
        # would make a seeded search draw other brackets on every run.
        self.study = optuna.create_study(direction="maximize", study_name=f"sim-{pruner}-{seed}",
                                         sampler=optuna.samplers.TPESampler(seed=seed), pruner=p)
        self.space, self.max_epochs = space, max_epochs
        self.trials: dict[int, object] = {}
        self.pruned: set[int] = set()

    def ask(self):
        from gunn_search.space.sample import sample

        trial = self.study.ask()
        self.trials[trial.number] = trial
        return Job(sample(trial, self.space), handle=trial.number)

    def report(self, n: int, epoch: int, metrics: dict) -> bool:
        trial = self.trials[n]
        if metrics.get("status"):
            return False
        trial.report(metrics["val_acc"], epoch)
        if epoch < self.max_epochs and trial.should_prune():
            self.pruned.add(n)
            return False
        return True

    def end(self, n: int, metrics: dict, completed: bool) -> None:
        from optuna.trial import TrialState

        if n in self.pruned:
            self.study.tell(n, state=TrialState.PRUNED)
        else:  # trained to the end, or stopped by a non-finite loss (0, as the search tells)
            self.study.tell(n, 0.0 if metrics.get("status") else metrics["val_acc"])


class TopKOneEpoch:
    """Random configurations for one epoch each, then the best go on to the end."""

    def __init__(self, space, seed: int, budget_epochs: float):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        self.space = space
        E = space.max_epochs
        # Half the budget screens, half trains the kept ones on from epoch 1 to the end.
        self.keep = max(1, int(budget_epochs / 2 // max(1, E - 1)))
        self.screen = max(self.keep, int(budget_epochs - self.keep * (E - 1)))
        self.asked = 0
        self.screened: dict[int, tuple[float, dict]] = {}
        self.queue: list[int] | None = None

    def ask(self):
        from gunn_search.space.sample import sample

        if self.asked < self.screen:
            self.asked += 1
            values = sample(self.study.ask(), self.space)
            return Job(values, stop_at=1, handle=("screen", self.asked, values))
        if len(self.screened) < self.screen:
            return None  # wait for the screen to end
        if self.queue is None:
            self.queue = sorted(self.screened, key=lambda i: -self.screened[i][0])[:self.keep]
        if not self.queue:
            return FINISHED
        i = self.queue.pop(0)
        return Job(self.screened[i][1], handle=("keep", i, None), resume_at=1)

    def report(self, handle, epoch: int, metrics: dict) -> bool:
        kind, i, values = handle
        if kind == "screen":
            self.screened[i] = (0.0 if metrics.get("status") else metrics["val_acc"], values)
        return True

    def end(self, handle, metrics: dict, completed: bool) -> None:
        pass
