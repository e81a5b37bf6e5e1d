"""The user-facing errors of `gunn-search`: each one line, printed without a traceback, exit 2.

Kept apart from the modules that raise them (which import Ray and MLflow) so the CLI can catch
them without importing either: a mistake in the command line is reported in well under a second.
"""


class SearchError(Exception):
    """A user-facing problem starting or resuming a search; one line."""


class ExportError(Exception):
    """One line: what could not be exported and why."""


class UsageError(Exception):
    """A bad flag or flag combination; one line."""
