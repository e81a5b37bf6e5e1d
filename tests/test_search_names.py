"""Which search of an experiment a command means (gunn_search/run/search_names.py): the same
command again is a new search; --resume continues the latest unfinished or the one named."""

from __future__ import annotations

import json

import pytest

from gunn_search.errors import SearchError
from gunn_search.run import search_names as sn


def folder(root, name, **state):
    d = root / name
    d.mkdir(parents=True)
    (d / "gunn_search.json").write_text(json.dumps({"parent_run_id": "x", **state}))


def test_a_new_search_goes_after_the_latest(tmp_path):
    assert sn.new_name(str(tmp_path), "smoke") == ("smoke", 1)
    folder(tmp_path, "smoke")  # the layout before: no "experiment" key, still the first
    assert sn.new_name(str(tmp_path), "smoke") == ("smoke-2", 2)
    folder(tmp_path, "smoke-2", experiment="smoke", finished=True)
    folder(tmp_path, "smoke-5", experiment="smoke")
    assert sn.new_name(str(tmp_path), "smoke") == ("smoke-6", 6)


def test_another_experiment_named_like_a_search_is_not_taken_for_one(tmp_path):
    folder(tmp_path, "smoke-2")  # experiment "smoke-2"'s own first search (old layout)
    folder(tmp_path, "smoke-3", experiment="smoke-3")
    assert sn.new_name(str(tmp_path), "smoke") == ("smoke", 1)
    assert sn.new_name(str(tmp_path), "smoke-2") == ("smoke-2-2", 2)
    (tmp_path / "smoke-4").mkdir()  # a folder without a state file is no search
    assert [n for n, _, _ in sn.searches(str(tmp_path), "smoke")] == []


def test_resume_takes_the_latest_unfinished_or_the_named(tmp_path):
    folder(tmp_path, "smoke")
    folder(tmp_path, "smoke-2", experiment="smoke", finished=True)
    folder(tmp_path, "smoke-3", experiment="smoke")
    folder(tmp_path, "smoke-4", experiment="smoke", finished=True)
    assert sn.resumed_name(str(tmp_path), "smoke", True) == "smoke-3"
    assert sn.resumed_name(str(tmp_path), "smoke", "smoke-2") == "smoke-2"
    with pytest.raises(SearchError, match="no such search.*smoke, smoke-2, smoke-3, smoke-4"):
        sn.resumed_name(str(tmp_path), "smoke", "smoke-9")


def test_nothing_to_resume_says_why_in_one_line(tmp_path):
    with pytest.raises(SearchError, match="it has no search there") as e:
        sn.resumed_name(str(tmp_path), "smoke", True)
    assert "\n" not in str(e.value)
    folder(tmp_path, "smoke", finished=True)
    with pytest.raises(SearchError, match="all 1 of its searches finished"):
        sn.resumed_name(str(tmp_path), "smoke", True)


def test_resume_command_names_the_search():
    from gunn_search.cli.search import resume_command

    assert resume_command(["--space", "s.yaml"], "s-2").endswith("--space s.yaml --resume s-2")
    assert resume_command(["--space", "s.yaml", "--resume", "s-2", "--seed", "1"], "s-2") == (
        "gunn-search --space s.yaml --seed 1 --resume s-2")
    assert resume_command(["--resume", "--space", "s.yaml"], "s") == (
        "gunn-search --space s.yaml --resume s")
