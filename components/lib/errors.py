"""The one exception type for a user's mistake.

A `UserError` ends a stage with a single line on stderr and exit status 2: the message names
the file, column, row or flag at fault and says what to do. Anything else is a bug in our own
code and keeps its traceback.
"""

import os

USER_ERROR_EXIT_CODE = 2
USER_ERROR_PREFIX = "error: "  # the start of that line; pipelines/local_run.py finds a stage's error by it


# Where a stage also leaves its user-error line: a file a parent process names (train under torchrun,
# which reports only "exit 1" for a worker's exit 2), and the container's termination message, which
# Kubernetes shows in the pod's status (a TrainJob's node, read by train_job).
USER_ERROR_FILE_ENV = "TEXTCLF_USER_ERROR_FILE"
TERMINATION_LOG = "/dev/termination-log"


def leave_user_error(line: str) -> None:
    for path in (os.environ.get(USER_ERROR_FILE_ENV), TERMINATION_LOG):
        if path and (path != TERMINATION_LOG or os.path.exists(path)):
            try:
                with open(path, "a") as handle:
                    handle.write(line + "\n")
            except OSError:
                pass  # a read-only termination log: the line is on stderr all the same


class UserError(Exception):
    """A problem with the user's input, configuration or environment, not with our code."""


# How a hint spells a flag: a stage's command line takes `--name value`; `make run` sets this
# variable for its stages, whose users type `name=value` (pipelines/local_run.py).
FLAG_STYLE_ENV = "TEXTCLF_FLAG_STYLE"
KEY_VALUE_STYLE = "key=value"


def flag_hint(name: str, value: object = None) -> str:
    """How to set a stage's flag where the user is: `--name value` on its command line, `name=value`
    in `make run`. True is a switch: a bare `--name` there, `name=true` here; None leaves the value open."""
    if os.environ.get(FLAG_STYLE_ENV) == KEY_VALUE_STYLE:
        return f"{name}={'...' if value is None else str(value).lower() if value is True else value}"
    return f"--{name}" if value is None or value is True else f"--{name} {value}"
