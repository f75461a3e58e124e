"""The one exception type for a user's mistake.

A `UserError` ends a stage with a single line on stderr and exit status 2: the message names
the file, column, row or flag at fault and says what to do. Anything else is a bug in our own
code and keeps its traceback.
"""

USER_ERROR_EXIT_CODE = 2
USER_ERROR_PREFIX = "error: "  # the start of that line; pipelines/local_run.py finds a stage's error by it


class UserError(Exception):
    """A problem with the user's input, configuration or environment, not with our code."""
