"""make serve: the local run's registered model (the config's registry_uri and model_name) behind
components.serve, KServe's V1 and V2 protocols on one port.

    python -m pipelines.serve_local [--config configs/default.yaml] [--port 8080] [--version latest] [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys

from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from pipelines.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--config", default="configs/default.yaml", help="the run configuration (YAML)")
    parser.add_argument("--port", default="8080", help="HTTP port")
    parser.add_argument("--version", default="latest", help="a version number or an alias (latest, production, ...)")
    parser.add_argument("overrides", nargs="*", help="key=value to override a config parameter (registry_uri=..., model_name=...)")
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        parameters = load_config(arguments.config, arguments.overrides).parameters
        missing = [name for name in ("registry_uri", "model_name") if not parameters.get(name)]
        if missing:
            raise UserError(f"{arguments.config}: parameters.{missing[0]} is not set; serving needs registry_uri and model_name")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    command = [sys.executable, "-m", "components.serve", "--registry_uri", parameters["registry_uri"], "--model_name",
               parameters["model_name"], "--version", arguments.version, "--port", arguments.port]  # fmt: skip
    # The server replaces this process, so that Ctrl-C, SIGTERM and its exit status reach it directly.
    os.execv(sys.executable, command)  # noqa: S606 (a list of arguments, no shell)


if __name__ == "__main__":
    sys.exit(main())
