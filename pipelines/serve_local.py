"""make serve: a registered model behind components.serve, KServe's V1 and V2 protocols on one port.

    python -m pipelines.serve_local [--config configs/default.yaml] [--port 8080] [--model NAME] [--version latest] [key=value ...]

The model served: `--model` (make serve MODEL=...), else the config's model_name when an override
names it, else the model the newest run under local.run_root registered (its run folder's
registration.json), else the config's model_name. The registry is the config's registry_uri, or
the one that run registered into.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from components.lib.data.contract import DECISION_FILE
from components.lib.errors import USER_ERROR_EXIT_CODE, UserError
from components.lib.stage_outputs import REGISTRATION_ARTIFACT
from pipelines.config import RunConfig, load_config

DEFAULT_VERSION = "latest"  # make serve's VERSION, and components.serve's --version
REGISTRATION = Path("register") / REGISTRATION_ARTIFACT / DECISION_FILE  # where a run folder keeps register's decision


@dataclass(frozen=True)
class Choice:
    registry_uri: str
    model_name: str
    why: str  # how it was chosen, for the log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--config", default="configs/default.yaml", help="the run configuration (YAML)")
    parser.add_argument("--port", default="8080", help="HTTP port")
    parser.add_argument("--model", default="", help="the registered model's name; empty: the newest run's model (see above)")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="a version number or an alias (latest, production, ...)")
    parser.add_argument("overrides", nargs="*", help="key=value to override a config parameter (registry_uri=..., model_name=...)")
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        choice = chosen_model(load_config(arguments.config, arguments.overrides), arguments.model, arguments.overrides, arguments.config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print(f"make serve: {choice.model_name} version {arguments.version} from {choice.registry_uri}: {choice.why}", file=sys.stderr)
    command = [sys.executable, "-m", "components.serve", "--registry_uri", choice.registry_uri, "--model_name",
               choice.model_name, "--version", arguments.version, "--port", arguments.port]  # fmt: skip
    # The server replaces this process, so that Ctrl-C, SIGTERM and its exit status reach it directly.
    os.execv(sys.executable, command)  # noqa: S606 (a list of arguments, no shell)


def chosen_model(config: RunConfig, model: str, overrides: list[str], config_path: str) -> Choice:
    parameters = config.parameters
    registry_uri = parameters.get("registry_uri", "")
    if not registry_uri:
        raise UserError(f"{config_path}: parameters.registry_uri is not set; serving needs the registry")
    if model:
        return Choice(registry_uri, model, "MODEL given")
    named = any(override.startswith("model_name=") for override in overrides)
    newest = None if named else newest_registration(Path(config.local.run_root))
    if newest is not None:
        run_dir, decision = newest
        registry_of_run = decision["uri"].rsplit("/", 2)[0]  # <registry>/<model>/<version>
        return Choice(registry_of_run, decision["model_name"], f"the model the newest run registered ({run_dir}); MODEL= picks another")
    if not parameters.get("model_name"):
        raise UserError(f"{config_path}: parameters.model_name is not set and no run registered a model; pass MODEL=<name>")
    return Choice(registry_uri, parameters["model_name"], "the config's model_name" + ("" if named else " (no run registered a model)"))


def newest_registration(run_root: Path) -> tuple[Path, dict] | None:
    """The newest run folder whose register stage registered a version, with its decision."""
    if not run_root.is_dir():
        return None
    for run_dir in sorted((path for path in run_root.iterdir() if (path / REGISTRATION).is_file()), reverse=True):
        try:
            decision = json.loads((run_dir / REGISTRATION).read_text())
        except (OSError, json.JSONDecodeError):
            print(f"make serve: {run_dir / REGISTRATION}: unreadable; skipped", file=sys.stderr)
            continue
        if decision.get("registered") and isinstance(decision.get("uri"), str) and isinstance(decision.get("model_name"), str):
            return run_dir, decision
    return None


if __name__ == "__main__":
    sys.exit(main())
