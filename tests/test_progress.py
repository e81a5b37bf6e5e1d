"""The search's progress on stderr: a live line on a terminal, plain lines in a pipe."""

import io
from types import SimpleNamespace

from gunn_search.run.progress import ProgressCallback
from gunn_search.space.compute_limits import fmt_duration


class Terminal(io.StringIO):
    def isatty(self):
        return True


def trial(tid, last=None):
    return SimpleNamespace(trial_id=tid, last_result=last or {})


def drive(cb):
    a, b = trial("a"), trial("b")
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    for e in (1, 2):
        cb.on_trial_result(0, [], a, {"epoch": e, "val_acc": 0.3 * e, "trial_status": "running"})
    cb.on_trial_result(0, [], b, {"epoch": 1, "val_acc": 0.1, "trial_status": "running"})
    cb.on_trial_result(0, [], b, {"epoch": 0, "val_acc": 0.0, "trial_status": "rejected by budget"})
    a.last_result = {"epoch": 2, "trial_status": "running"}
    cb.on_trial_complete(0, [], a)  # epochs left: stopped early
    cb.on_experiment_end([])


def test_on_a_terminal_one_line_is_redrawn_in_place_with_epochs_best_and_eta():
    out = Terminal()
    cb = ProgressCallback(num_samples=4, max_epochs=4, stream=out)
    drive(cb)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended at the end
    last = text.rsplit("\r\x1b[2K", 1)[-1]
    assert "trials 1 running, 0 done, 1 stopped early, 0 failed of 4" in last
    assert "epochs 3/16" in last and "best val_acc 0.6000 (a)" in last
    # 2 unstarted trials (8 epochs) + b's 3 left: an upper bound, ASHA may stop them sooner
    assert cb.remaining_epochs() == 11 and "ETA <= " in last


def test_in_a_pipe_plain_lines_only_when_something_ends():
    out = io.StringIO()
    cb = ProgressCallback(num_samples=4, max_epochs=4, every=3600, stream=out)
    drive(cb)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert len(lines) == 2  # the first event, then the forced line when a trial ends
    assert lines[-1].startswith("gunn-search: [") and "1 stopped early" in lines[-1]


def test_durations_read_well():
    assert [fmt_duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]


def test_branch_epochs_count_in_the_epochs_done_and_in_the_budget():
    out = Terminal()
    # 4 trials of 4 epochs, each with rungs whose branches cost 1.5 epochs in all
    cb = ProgressCallback(num_samples=4, max_epochs=4, stream=out, branch_epochs=1.5)
    a = trial("a")
    cb.on_trial_start(0, [], a)
    cb.on_trial_result(0, [], a, {"epoch": 1, "val_acc": 0.2, "trial_status": "running",
                                  "branch_epochs": 1.0})  # a rung: the branch ran
    cb.on_trial_result(0, [], a, {"epoch": 2, "val_acc": 0.3, "trial_status": "running",
                                  "branch_epochs": 0.0})
    cb.on_trial_result(0, [], a, {"epoch": 2, "val_acc": 0.3, "trial_status": "running",
                                  "branch_epochs": 1.0})  # Tune's duplicate last result
    assert "epochs 3/22" in cb.line()  # 2 epochs + 1 in a branch, of 4 x (4 + 1.5)
    assert cb.remaining_epochs() == 3 * 5.5 + (5.5 - 2)
