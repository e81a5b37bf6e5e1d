"""The user-facing errors of `gunn-search`: each one line, printed without a traceback, exit 2.

`SearchError` is the base of the search's own (a search that cannot start or resume, an export,
an ablation); a bad flag is the trainer's `UsageError`, one class for both commands. The
commands catch `USER_ERRORS` (the trainer's base and this one) and print any of them with
`trainers.errors.error_line`, as `gunn-train` does.

Kept apart from the modules that raise them (which import Ray and MLflow) so the CLI can catch
them without importing either: a mistake in the command line is reported in well under a second.
"""

from trainers.errors import TrainerError, UsageError

__all__ = ["SearchError", "ExportError", "UsageError", "USER_ERRORS"]


class SearchError(Exception):
    """A user-facing problem of gunn-search: starting or resuming a search, exporting a trial,
    running an ablation; one line."""


class ExportError(SearchError):
    """One line: what could not be exported and why."""


# What the gunn-search commands print as one line, exit 2 (1 for a full disk): bad flags,
# space files and data (the trainer's errors) and the search's own.
USER_ERRORS = (TrainerError, SearchError)
