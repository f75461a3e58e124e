"""The kserve Python SDK, imported safely."""

from __future__ import annotations

import contextlib
import sys

from components.lib.errors import UserError

KSERVE_HTTP_PORT = 8080  # where KServe expects a predictor container to listen


def import_kserve():
    """kserve parses sys.argv when imported (kserve/model_server.py: `parser.parse_known_args()`), and
    would take a stage's --model_name and any --help for its own: it gets a bare argv instead."""
    try:
        with contextlib.ExitStack() as restore:
            argv, sys.argv = sys.argv, sys.argv[:1]
            restore.callback(setattr, sys, "argv", argv)
            import kserve
    except ImportError as error:
        raise UserError(f"serving needs the kserve package, which is not installed: pip install -e '.[serve]' ({error})") from None
    return kserve
