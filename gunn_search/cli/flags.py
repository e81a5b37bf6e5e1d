"""Flags more than one `gunn-search` command takes, as argparse reads them:
``--tracking-uri`` (search, export, ablate), ``--address`` and ``--gpus-per-trial`` (search,
ablate).

Each is checked once, below the commands, where the Python API takes the same keywords
(`track.uri.tracking_uri`, `run.resources.gpus_request` and `check_gpus_here`): the API never
imports the CLI. Nothing here imports torch, Ray or MLflow before a flag is known to be good.
"""

from __future__ import annotations

import argparse

from gunn_search.run.resources import gpus_value

TRACKING_URI_HELP = "MLflow tracking URI (default: sqlite:///./mlflow.db)"


def add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help=TRACKING_URI_HELP)


def add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")


def gpus_arg(text: str) -> float | str:
    """`gpus_value` as an argparse type; the search checks the value as the space file's key
    (`space.with_settings`)."""
    try:
        return gpus_value(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
