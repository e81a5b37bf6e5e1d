"""`gunn-search`: run a search from a space file, or export its best trial, or ablate it.

    gunn-search --space smoke.yaml [--num-samples N] [--max-epochs E] [--dry-run] ...
    gunn-search export --experiment NAME [--run-id ID] --out best.yaml
    gunn-search ablate --experiment NAME [--run-id ID] [--variants gunn,sunn,gunn-nores] [--seeds 3]
    gunn-search importances --experiment NAME [--search SEARCH]

This module picks the command (`gunn_search.cli.search`, `.export`, `.ablate`, `.importances`)
and turns a user's mistake into one line and exit 2. Results go to stdout, status and errors to
stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an offline tool sends no telemetry

from trainers.errors import report

from gunn_search.cli.export import cmd_export
from gunn_search.cli.search import cmd_search
from gunn_search.errors import USER_ERRORS
from gunn_search.run import interrupts
from gunn_search.track.uri import quiet_libraries


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "export":
            return cmd_export(argv[1:])
        if argv and argv[0] == "importances":
            from gunn_search.cli.importances import cmd_importances
            return cmd_importances(argv[1:])
        if argv and argv[0] == "ablate":
            from gunn_search.cli.ablate import cmd_ablate
            return cmd_ablate(argv[1:])
        return cmd_search(argv)
    except USER_ERRORS as e:
        return report("gunn-search", e)
    except KeyboardInterrupt:  # before a command could say more (one that could has said it)
        interrupt = interrupts.received()
        print("gunn-search: interrupted", file=sys.stderr)
        return interrupt.exit_code if interrupt else 130


def run() -> None:
    """Console-script entry: `main`, then exit without the interpreter's teardown.

    Once main has returned, Ray is shut down and every MLflow write is flushed; what is left
    is the teardown of torch's, Ray's and grpc's C++ state, 2.5 s here after every search
    (measured: no Python frame runs in it). A crash still raises and prints its traceback.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (gunn-search ... | head): nothing to keep
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
