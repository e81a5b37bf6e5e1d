"""Joining Ray: the checks of a cluster's address that need no Ray (run before anything
starts), and `ray.init` for a search or an ablation, with one-line errors."""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlparse

from gunn_search.errors import SearchError, UsageError
from gunn_search.track import store as tr


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable Ray address (ray.init would hang for minutes)."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise SearchError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as e:
        raise SearchError(f"--address {address}: cannot reach a Ray cluster there "
                          f"({e.strerror or e})") from None


def check_cluster(address: str, tracking_uri: str) -> None:
    """The checks before joining a cluster at `address` that need no Ray: the address answers,
    and with Ray Client (whose driver loop runs on the head node) the store is not local."""
    if address.startswith("ray://") and tr.is_local_uri(tracking_uri):
        raise UsageError(f"--address {address}: with Ray Client the driver loop runs on the head "
                         f"node, where {tracking_uri} is not this machine's store; pass "
                         "--tracking-uri http://... of a tracking server")
    check_address(address)


def init_ray(address: str | None, runtime_env: dict | None = None) -> bool:
    """Join the cluster at `address`, or start a Ray instance of our own ("local") without one:
    never a cluster that happens to run on this machine, which Ray's default would join.
    Returns whether it started a session: one the caller already opened (a notebook's
    `ray.init`) is used as it is, and left open after."""
    import ray

    if ray.is_initialized():
        return False

    from gunn_search.run.interrupts import sheltered_ray_node

    try:
        with sheltered_ray_node() if not address else contextlib.nullcontext():
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     configure_logging=True, logging_level="ERROR", runtime_env=runtime_env)
    except (ConnectionError, ray.exceptions.RayError) as e:
        if not address:
            raise SearchError(f"could not start Ray on this machine ({tr.shown_line(str(e))})"
                              ) from None
        raise SearchError(f"--address {address}: could not join the Ray cluster "
                          f"({tr.shown_line(str(e))}); if it uses token authentication, "
                          "set RAY_AUTH_MODE=token and its token here too") from None
    return True
