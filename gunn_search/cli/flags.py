"""Flags more than one `gunn-search` command takes, each read and checked here once:
``--tracking-uri`` (search, export, ablate), ``--address`` and ``--gpus-per-trial`` (search,
ablate).

Nothing here imports torch, Ray or MLflow before a flag is known to be good.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from trainers.config_errors import describe_error

from gunn_search.errors import UsageError
from gunn_search.track.uri import check_tracking_uri, default_tracking_uri

TRACKING_URI_HELP = "MLflow tracking URI (default: sqlite:///./mlflow.db)"


def add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help=TRACKING_URI_HELP)


def add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")


def tracking_uri(given: str | None) -> str:
    """The tracking URI a command uses (the default when none is given), checked."""
    uri = given or default_tracking_uri()
    check_tracking_uri(uri)
    return uri


def check_store_exists(uri: str) -> None:
    """A command that reads a search's results needs its local store to exist."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {uri[len('sqlite:///'):]} (run a search first, "
                         "or pass --tracking-uri)")


def gpus_value(text: str) -> float | str:
    """``--gpus-per-trial``'s text as the value `resources.gpus_per_trial` takes: auto or a
    number (ValueError otherwise). Whether it is a good one is the key's rule (below)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected auto or a number (got {text!r})") from None


def gpus_arg(text: str) -> float | str:
    """`gpus_value` as an argparse type; the search checks the value as the space file's key
    (`space.with_settings`)."""
    try:
        return gpus_value(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def gpus_request(text: str) -> float | str:
    """``--gpus-per-trial`` of a command without a space file (ablate): `gpus_value`, checked by
    the rule of the space file's `resources.gpus_per_trial` (`space.schema.Resources`);
    UsageError (one line) otherwise."""
    from gunn_search.space.schema import Resources

    try:
        return Resources(gpus_per_trial=gpus_value(text)).gpus_per_trial
    except ValueError as e:  # pydantic's ValidationError is a ValueError too
        problem = (describe_error(e.errors()[0])[1] if isinstance(e, ValidationError)
                   else str(e))
        raise UsageError(f"--gpus-per-trial: {problem}") from None


def check_gpus_here(gpus: float | str, address: str | None) -> None:
    """A GPU asked for on this machine (no cluster to join) must be there: never train on the
    CPU in silence. A cluster's GPUs may be on other nodes, so it is not checked then."""
    if gpus == "auto" or gpus <= 0 or address:
        return
    import torch
    if not torch.cuda.is_available():
        raise UsageError(f"--gpus-per-trial {gpus:g}: this machine has no GPU (use "
                         "--gpus-per-trial 0 to train on the CPU)")
