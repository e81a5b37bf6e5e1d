"""`python -m gunn_search.cli`: the `gunn-search` command."""

from gunn_search.cli.main import run

run()
