"""How every stage becomes a command line: `python -m components.<stage> --flag value ...`.

`run_stage(fn)` hands a stage function to Python Fire, so the function's keyword-only parameters
are the flags and its docstring's `Args:` section is the `--help` text. Around Fire it adds:

- types: Fire guesses types from the text (`true` stays a string, `1,2` becomes a tuple), so each
  value is converted to the parameter's annotation, and a bad value is a one-line user error;
- errors: a `UserError` prints one line and exits with status 2, with no traceback;
- flags: an unknown or short flag is refused before any work, and `--help` lists every flag with
  its full default and its help text;
- overwrite protection: run by hand, a stage refuses an `--output_uri` that already holds a
  committed output unless `--overwrite` is given, and every output folder that holds files no stage
  committed there, or another stage's output (`artifacts.claim_output`), with nothing touched; a
  Kubeflow task, which passes `--executor_input`, writes its own output path, and a retried one may
  find its earlier output there;
- Kubeflow: when Kubeflow passes `--executor_input`, the stage's `StageResult` is written to the
  executor-output file, so that artifact metadata and output parameters reach the KFP UI and the DAG.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import logging
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fire
import fire.docstrings

from components.lib.credentials import credential_in
from components.lib.errors import USER_ERROR_EXIT_CODE, USER_ERROR_PREFIX, UserError, flag_hint, leave_user_error
from components.lib.storage import artifacts
from components.lib.storage.artifacts import MANIFEST, is_committed

EXECUTOR_INPUT_FLAG = "executor_input"
OUTPUT_FLAG = "output_uri"
OVERWRITE_FLAG = "overwrite"
# Help of the flags added here rather than declared by the stage function.
ADDED_FLAG_HELP = {
    OVERWRITE_FLAG: f"Replace a committed output already in --{OUTPUT_FLAG}; without it one is refused (Kubeflow tasks always write).",
}
HELP_WORDS = ("-h", "--help")
METAVARS = {bool: "true|false", int: "INT", float: "NUMBER", list: "JSON_LIST"}


@dataclass
class StageResult:
    """What a stage reports when it ends.

    `summary` is printed as one JSON line. `artifact_metadata` maps an output name to metadata for
    that output artifact, and `parameters` maps an output name to a plain value; both are written
    to the Kubeflow executor-output file when the stage runs as a KFP task. `artifact_uri_parameters`
    maps an output parameter to an output artifact whose storage URI it should carry (on a cluster
    that is the s3:// URI, which a later task can read, not the local mount path the stage wrote to).
    `artifact_uris` points an output artifact at a folder that already exists in the same run,
    instead of writing it: the KFP launcher takes an output's `uri` from the executor output
    (backend/src/v2/component/launcher_v2.go, uploadOutputArtifacts -> mergeRuntimeArtifacts), finds
    nothing at its local path to upload, and records the artifact with that URI, so nothing is copied.
    """

    summary: dict[str, Any] = field(default_factory=dict)
    artifact_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    artifact_uri_parameters: dict[str, str] = field(default_factory=dict)
    artifact_uris: dict[str, str] = field(default_factory=dict)


def run_stage(stage_fn: Callable[..., StageResult | None] | dict[str, Callable[..., StageResult | None]]) -> None:
    """Run a stage function (or a dict of subcommands) as a Fire command line.

    The entry point of every `components/<stage>.py`.
    """
    configure_logging()
    if isinstance(stage_fn, dict):
        component: Any = {name: typed_command(function) for name, function in stage_fn.items()}
    else:
        component = typed_command(stage_fn)
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    module = spec.name if spec else Path(sys.argv[0]).stem
    argv = sys.argv[1:]
    artifacts.WRITER.set(module)  # recorded in every manifest this stage commits
    if any(word in HELP_WORDS for word in argv):
        print(help_text(argv, component, module, main.__doc__ or ""))
        return
    try:
        check_flags(argv, component, module)
        fire.Fire(component, name=module)
    except UserError as error:
        print(f"{USER_ERROR_PREFIX}{error}", file=sys.stderr)
        leave_user_error(f"{USER_ERROR_PREFIX}{error}")
        sys.exit(USER_ERROR_EXIT_CODE)


def chosen_command(argv: list[str], commands: Callable | dict[str, Callable], module: str) -> tuple[Callable | None, list[str], str]:
    """The command `argv` runs, the rest of `argv`, and the command's name (`module subcommand`);
    the command is None when `argv` names none of the subcommands."""
    if not isinstance(commands, dict):
        return commands, argv, module
    if argv and argv[0] in commands:
        return commands[argv[0]], argv[1:], f"{module} {argv[0]}"
    return None, argv, module


def check_flags(argv: list[str], commands: Callable | dict[str, Callable], module: str) -> None:
    """Refuse a flag the stage does not have before any work starts, naming the nearest one.

    Fire would run the stage without it and complain only afterwards ("Could not consume arg"),
    after a committed output was written. Short flags are refused too: Fire expands `-d` to
    whichever flag starts with d, which differs from stage to stage.
    """
    command, argv, module = chosen_command(argv, commands, module)
    if command is None:
        return  # Fire lists the subcommands
    parameters = inspect.signature(command).parameters
    given = set()
    for word in argv:
        if word == "--":  # Fire's own flags follow
            break
        if not word.startswith("-") or is_number(word):
            continue
        name = word.lstrip("-").partition("=")[0].replace("-", "_")
        if not word.startswith("--"):
            raise UserError(f"{word}: short flags are not accepted; give the full name (python -m {module} --help lists them)")
        given.add(name)
        if name in parameters or (name.startswith("no") and name[2:] in parameters):
            continue
        nearest = difflib.get_close_matches(name, sorted(parameters), n=1)
        hint = f"; did you mean --{nearest[0]}?" if nearest else ""
        raise UserError(f"--{name}: {module} has no such flag{hint} (python -m {module} --help lists them)")
    # Fire would print a screenful of usage for these, after the log has started.
    missing = [f"--{name}" for name, parameter in parameters.items() if parameter.default is parameter.empty and name not in given]
    if missing:
        raise UserError(f"{module} needs {', '.join(missing)}; python -m {module} --help lists its flags")


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def help_text(argv: list[str], commands: Callable | dict[str, Callable], module: str, module_doc: str) -> str:
    """`--help`: every flag of the command with its type, full default and help text (Fire's own
    help cuts long defaults short and offers short flags that are refused), or the subcommands."""
    command, _, name = chosen_command(argv, commands, module)
    if command is None:
        assert isinstance(commands, dict)
        return subcommands_help(commands, module, module_doc)
    return command_help(command, name)


def subcommands_help(commands: dict[str, Callable], module: str, module_doc: str) -> str:
    width = max(len(name) for name in commands)
    lines = [f"usage: python -m {module} COMMAND [--flag VALUE ...]", "", fire.docstrings.parse(module_doc).summary or "", "", "commands:"]
    lines += [f"  {name:{width}}  {fire.docstrings.parse(command.__doc__).summary}" for name, command in commands.items()]
    return "\n".join([*lines, "", f"python -m {module} COMMAND --help lists a command's flags."])


def command_help(command: Callable, name: str) -> str:
    docstring = fire.docstrings.parse(command.__doc__)
    flag_help = {**ADDED_FLAG_HELP, **{arg.name: arg.description for arg in docstring.args or []}}
    parameters = inspect.signature(command).parameters.values()
    required = " ".join(f"--{parameter.name} {metavar(parameter)}" for parameter in parameters if parameter.default is parameter.empty)
    lines = [f"usage: python -m {name} {required} [--flag VALUE ...]", "", docstring.summary or ""]
    lines += ["", docstring.description] if docstring.description else []
    lines += ["", "flags:"]
    for parameter in parameters:
        default = "required" if parameter.default is parameter.empty else f"default: {shown_default(parameter.default)}"
        lines.append(f"  --{parameter.name} {metavar(parameter)} ({default})")
        lines += [f"      {flag_help[parameter.name]}"] if flag_help.get(parameter.name) else []
    return "\n".join(lines)


def metavar(parameter: inspect.Parameter) -> str:
    return METAVARS.get(parameter.annotation, "TEXT")


def shown_default(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    return shlex.quote(value) if isinstance(value, str) else str(value)


def configure_logging() -> None:
    """Our own INFO lines; libraries (onnxruntime's quantizer, botocore, ...) only from WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("components").setLevel(logging.INFO)


def typed_command(stage_fn: Callable[..., StageResult | None]) -> Callable[..., None]:
    """Wrap `stage_fn` so that flag values are converted to the annotated types first; a stage
    with an output folder gets the `--overwrite` flag."""
    signature = inspect.signature(stage_fn)
    annotations = inspect.get_annotations(stage_fn, eval_str=True)
    guards_output = OUTPUT_FLAG in signature.parameters

    @functools.wraps(stage_fn)
    def command(**flags: Any) -> None:
        executor_input = flags.get(EXECUTOR_INPUT_FLAG) or ""
        overwrite = coerce_flag(OVERWRITE_FLAG, flags.pop(OVERWRITE_FLAG, False), bool)
        typed = {name: coerce_flag(name, value, annotations.get(name, str)) for name, value in flags.items()}
        refuse_credentials(typed)
        if guards_output and not executor_input and not overwrite:
            refuse_committed_output(typed[OUTPUT_FLAG])
        # A Kubeflow task writes the launcher's own output paths, which a retried attempt finds half-written.
        artifacts.OUTPUTS_ARE_THE_LAUNCHERS.set(bool(executor_input))
        result = stage_fn(**typed)
        if result is None:
            return
        print(json.dumps(result.summary, sort_keys=True, default=str))
        if executor_input:
            write_executor_output(to_text(executor_input), result)

    parameters = [
        parameter.replace(annotation=annotations.get(name, parameter.annotation)) for name, parameter in signature.parameters.items()
    ]
    if guards_output:
        parameters.append(inspect.Parameter(OVERWRITE_FLAG, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool))
    set_signature(command, signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))
    return command


def set_signature(function: Callable[..., Any], signature: inspect.Signature) -> None:
    """What inspect.signature (how Fire and kfp read a function) answers for `function` from now on: its
    __signature__, set through its __dict__ as mypy's function type declares no such attribute."""
    vars(function)["__signature__"] = signature


def refuse_credentials(flags: dict[str, Any]) -> None:
    """Flag values reach manifests, model cards, logs and tracking: a credential in one is refused first."""
    for name, value in flags.items():
        kind = credential_in(value) if name != EXECUTOR_INPUT_FLAG else ""
        if kind:
            raise UserError(
                f"--{name}: holds {kind}, which would be written to manifests, model cards, logs and tracking;"
                " give the service its credentials through its own environment variables or a Secret"
            )


def refuse_committed_output(output_uri: str) -> None:
    """Run by hand, a stage must not silently replace an output that a finished run committed."""
    if output_uri and is_committed(output_uri):
        raise UserError(
            f"--{OUTPUT_FLAG} {output_uri}: already holds a committed output ({MANIFEST});"
            f" pass {flag_hint(OVERWRITE_FLAG, True)} to replace it, or choose another folder"
        )


def coerce_flag(name: str, value: Any, annotation: Any) -> Any:
    """Convert one flag value, as Fire parsed it, to the parameter's annotated type."""
    try:
        if annotation is bool:
            return to_bool(value)
        if annotation is int:
            return to_int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if annotation is list:
            return to_list(value)
        return to_text(value)
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "an integer", float: "a number", list: "a JSON list"}.get(annotation, "text")
        raise UserError(f"--{name}: expected {kind}, got {value!r}") from None


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off", ""):
        return False
    raise ValueError(value)


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(value)


def to_list(value: Any) -> list:
    """A JSON list, whether Fire already parsed it or passed the text through."""
    if isinstance(value, (list, tuple)):
        return list(value)
    parsed = json.loads(value)
    if not isinstance(parsed, list):
        raise ValueError(value)
    return parsed


def to_text(value: Any) -> str:
    """Undo Fire's guesses for a text flag: `a,b` arrives as a tuple, JSON as a dict."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(to_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


# The KFP driver names an output <run root>/<task>/<salt>/<output> (backend/src/v2/driver/driver.go,
# provisionOutputs), under the run root <pipeline root>/<pipeline>/<run id>.
RUN_ROOT_DEPTH = 3


def pointed_uri(name: str, assigned: str, target: str) -> str:
    """`target`, for the output `name` that the launcher assigned `assigned`. On a cluster it must lie
    in the same run's folder, or the launcher refuses it after the work is done (objectstore/config.go,
    KeyFromURI: the run root is the bucket prefix it uploads and records under). kfp.local, with
    local folders, takes any path."""
    if "://" not in assigned:
        return target
    run_root = assigned.rsplit("/", RUN_ROOT_DEPTH)[0] + "/"
    if not target.startswith(run_root):
        raise UserError(f"output {name}: {target} is not in this run's folder {run_root}; the KFP launcher records only URIs there")
    return target


def write_executor_output(executor_input_json: str, result: StageResult) -> None:
    """Write the KFP executor-output file named in the executor input.

    Format: `{"artifacts": {name: {"artifacts": [{"name", "uri", "metadata"}]}},
    "parameterValues": {name: value}}`; the URIs are echoed back from the executor input.
    """
    try:
        executor_input = json.loads(executor_input_json)
    except json.JSONDecodeError:
        raise UserError("--executor_input: not valid JSON; it is set by Kubeflow") from None
    outputs = executor_input.get("outputs", {})
    artifacts = {}
    for name, entry in outputs.get("artifacts", {}).items():
        listed = entry.get("artifacts", [])
        if not listed:
            continue
        artifact = dict(listed[0])
        if name in result.artifact_uris:
            artifact["uri"] = pointed_uri(name, artifact["uri"], result.artifact_uris[name])
        artifact["metadata"] = {**artifact.get("metadata", {}), **result.artifact_metadata.get(name, {})}
        artifacts[name] = {"artifacts": [artifact]}
    declared = outputs.get("parameters", {})
    parameter_values = {name: value for name, value in result.parameters.items() if name in declared}
    for name, artifact_name in result.artifact_uri_parameters.items():
        if name in declared and artifact_name in artifacts:
            parameter_values[name] = artifacts[artifact_name]["artifacts"][0]["uri"]
    output_file = outputs.get("outputFile")
    if not output_file:
        raise UserError("--executor_input: has no outputs.outputFile; it is set by Kubeflow")
    path = Path(output_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"artifacts": artifacts, "parameterValues": parameter_values}))
