"""The compiled pipelines: flags match the stages, placement, secrets, caching, and the lint itself."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from components.lib.cli import EXECUTOR_INPUT_FLAG
from components.lib.errors import UserError
from components.lib.training.settings import PAUSE_FLAG, TrainConfig
from pipelines import lint
from pipelines.compile import OUTPUT_NAMES, compile_pipeline
from pipelines.config import KubeflowSettings
from pipelines.parameters import exposed_flags, pipeline_parameters
from pipelines.stages import ALL_STAGES, stage_function
from tests.conftest import FAKE_ACCESS_KEY, FAKE_SECRET_KEY


@pytest.fixture(scope="module", params=sorted(OUTPUT_NAMES))
def compiled(request, tmp_path_factory) -> Path:
    variant = request.param
    path = tmp_path_factory.mktemp(variant) / OUTPUT_NAMES[variant]
    with pytest.MonkeyPatch.context() as patch:
        # Credentials planted in the environment must not reach the compiled YAML.
        patch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
        patch.setenv("KFP_TOKEN", "planted-kfp-token-0123456789")
        compile_pipeline(KubeflowSettings(), path, variant)
    return path


def executors(path: Path) -> dict:
    """The container executors."""
    found = next(yaml.safe_load_all(path.read_text()))["deploymentSpec"]["executors"]
    return {name: executor for name, executor in found.items() if "container" in executor}


def passed_flags(container: dict) -> list[str]:
    return [part[2:] for part in container["args"] if isinstance(part, str) and part.startswith("--")]


def test_every_flag_passed_exists_on_the_stage_and_every_required_flag_is_passed(compiled):
    for name, executor in executors(compiled).items():
        container = executor["container"]
        stage = container["command"][-1].removeprefix("components.")
        assert container["command"] == ["python3", "-m", f"components.{stage}"], name
        parameters = inspect.signature(stage_function(stage)).parameters
        flags = passed_flags(container)
        assert set(flags) <= set(parameters), f"{stage}: flags not on the stage: {set(flags) - set(parameters)}"
        required = {flag for flag, parameter in parameters.items() if parameter.default is inspect.Parameter.empty}
        assert required <= set(flags), f"{stage}: required flags not passed: {required - set(flags)}"
        assert len(flags) == len(set(flags)), f"{stage}: a flag is passed twice"
        assert flags[-1] == EXECUTOR_INPUT_FLAG and container["args"][-1] == "{{$}}"


def test_every_training_control_is_a_train_flag_and_a_pipeline_parameter():
    """All but the pause of a halving round, which only the sweep sets: a training run paused by a parameter would be released half-trained."""
    train_flags = set(inspect.signature(stage_function("train")).parameters)
    parameters = {parameter.name: parameter for parameter in pipeline_parameters()[0]}
    for control in (field.name for field in dataclasses.fields(TrainConfig)):
        assert control in train_flags and (control in parameters) == (control != PAUSE_FLAG), control


def test_every_stage_flag_is_a_pipeline_parameter_unless_the_dag_fills_it(compiled):
    spec = next(yaml.safe_load_all(compiled.read_text()))
    declared = spec["root"]["inputDefinitions"]["parameters"]
    for stage in ALL_STAGES:
        for flag, name in exposed_flags(stage).items():
            assert name in declared, f"{stage} --{flag}"
            assert declared[name].get("description"), f"{name} has no help text in the KFP UI"
    assert declared["learning_rate"]["defaultValue"] == inspect.signature(stage_function("train")).parameters["learning_rate"].default


def test_the_lint_passes_and_no_credential_is_written_down(compiled):
    assert lint.check_pipeline(compiled) == []
    text = compiled.read_text()
    for planted in (FAKE_ACCESS_KEY, FAKE_SECRET_KEY, "planted-kfp-token"):
        assert planted not in text


def test_gpu_placement_and_secret_env_are_on_the_right_tasks(compiled):
    documents = list(yaml.safe_load_all(compiled.read_text()))
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors(compiled).items():
        resources = executor["container"].get("resources", {})
        if name == "exec-train":
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert "pipelinechannel--gpu_count" in resources["accelerator"]["resourceCount"]
            assert executor["container"]["args"][executor["container"]["args"].index("--expected_gpus") + 1].endswith("['expected_gpus']}}")
            assert platform[name]["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
            assert platform[name]["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("gpu_toleration")
            assert platform[name]["emptyDirMounts"][1] == {
                "medium": "Memory",
                "mountPath": "/dev/shm",
                "sizeLimit": "2Gi",
                "volumeName": "dshm",
            }
            assert executor["container"]["image"].endswith("/textclf-cuda:0.1.0")
        else:
            assert "accelerator" not in resources and "nodeSelector" not in platform.get(name, {})
            assert executor["container"]["image"].endswith("/textclf-cpu:0.1.0")
        assert {"cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"} <= set(resources), name
        secret = platform[name]["secretAsEnv"][0]
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("s3_secret_name")
        assert {entry["envVar"] for entry in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def mutated(compiled: Path, tmp_path: Path, change) -> Path:
    documents = list(yaml.safe_load_all(compiled.read_text()))
    change(documents)
    path = tmp_path / compiled.name
    path.write_text(yaml.safe_dump_all(documents))
    return path


def stage_task(docs, stage: str) -> dict:
    spec = docs[0]
    return next(task for _, task, _, _ in lint.all_tasks(spec["root"]["dag"], spec) if lint.stage_of(task) == stage)


def drop_condition_on(docs, parameter: str) -> None:
    for component in docs[0]["components"].values():
        for task in component.get("dag", {}).get("tasks", {}).values():
            if f"pipelinechannel--{parameter}'" in task.get("triggerPolicy", {}).get("condition", ""):
                del task["triggerPolicy"]


def set_root_parameter_type(docs, name: str, kind: str) -> None:
    docs[0]["root"]["inputDefinitions"]["parameters"][name]["parameterType"] = kind


def set_train_retry_window(docs, window: str) -> None:
    stage_task(docs, "train")["retryPolicy"]["backoffMaxDuration"] = window


def drop_tmp_mount(docs, executor: str) -> None:
    config = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]
    config["emptyDirMounts"] = [mount for mount in config["emptyDirMounts"] if mount["mountPath"] != "/tmp"]


@pytest.mark.parametrize(
    "change, complaint",
    [
        # The KFP driver reads the GPU count with GetStringValue(): an INT parameter silently drops the limit.
        (lambda docs: set_root_parameter_type(docs, "gpu_count", "NUMBER_INTEGER"), "resourceCount is bound to"),
        (lambda docs: set_root_parameter_type(docs, "gpu_node_selector", "STRING"), "the node selector is bound to a STRING"),
        (lambda docs: set_root_parameter_type(docs, "gpu_toleration", "NUMBER_INTEGER"), "the toleration is bound to"),
        (lambda docs: set_root_parameter_type(docs, "s3_secret_name", "STRUCT"), "the Secret name is bound to"),
        (lambda docs: set_train_retry_window(docs, "3600s"), "a preempted long run would not resume"),
        (lambda docs: drop_tmp_mount(docs, "exec-evaluate"), "evaluate has no emptyDir at /tmp"),
    ],
)
def test_the_lint_holds_the_kfp_backends_contract(compiled, tmp_path, change, complaint):
    problems = lint.check_pipeline(mutated(compiled, tmp_path, change))
    assert any(complaint in problem for problem in problems), problems


@pytest.mark.parametrize(
    "change, complaint",
    [
        (
            lambda docs: (
                docs[0]["deploymentSpec"]["executors"]["exec-evaluate"]["container"]
                .setdefault("resources", {})
                .update(accelerator={"resourceType": "nvidia.com/gpu", "resourceCount": "1"})
            ),
            "asks for GPU placement",
        ),
        (
            lambda docs: docs[0]["deploymentSpec"]["executors"]["exec-tokenize"]["container"].update(
                image="ghcr.io/textclf/textclf-cpu:latest"
            ),
            "not pinned",
        ),
        (
            lambda docs: docs[0]["deploymentSpec"]["executors"]["exec-tokenize"]["container"].update(image="ghcr.io/textclf/textclf-cpu"),
            "not pinned",
        ),
        (
            lambda docs: docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-evaluate"].pop("secretAsEnv"),
            "from a Kubernetes Secret",
        ),
        (
            lambda docs: docs[0]["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["env"].append(
                {"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}
            ),
            "as a literal value",
        ),
        (
            lambda docs: docs[0]["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["env"].append(
                {"name": "NOTE", "value": "AKIAABCDEFGHIJKLMNOP"}
            ),
            "literal credential",
        ),
        (
            lambda docs: docs[0]["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["env"].append(
                {"name": "MLFLOW_TRACKING_URI", "value": "https://user:password@mlflow.example.com"}
            ),
            "literal credential (a URL with a password in it)",
        ),
    ],
)
def test_the_lint_catches_what_it_checks(compiled, tmp_path, change, complaint):
    problems = lint.check_pipeline(mutated(compiled, tmp_path, change))
    assert any(complaint in problem for problem in problems), problems


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda docs: drop_condition_on(docs, "deploy"), "deploy does not run after register behind a condition on the parameter deploy"),
        (lambda docs: stage_task(docs, "deploy").update(cachingOptions={"enableCache": True}), "deploy should not be cached"),
        (lambda docs: docs[0]["deploymentSpec"]["executors"]["exec-deploy"]["container"].update(image="textclf-cpu"), "not pinned"),
    ],
)
def test_the_lint_keeps_deploy_behind_its_parameter_and_off_the_cache(tmp_path, change, complaint):
    compiled = compile_pipeline(KubeflowSettings(), tmp_path / "compiled" / "pipeline.yaml")
    problems = lint.check_pipeline(mutated(compiled, tmp_path, change))
    assert any(complaint in problem for problem in problems), problems


def test_the_lint_catches_a_broken_chain_and_an_ungated_register(tmp_path):
    path = tmp_path / "pipeline.yaml"
    compile_pipeline(KubeflowSettings(), path)
    documents = list(yaml.safe_load_all(path.read_text()))
    documents[0]["root"]["dag"]["tasks"]["export"]["dependentTasks"].remove("evaluate")
    condition = documents[0]["root"]["dag"]["tasks"]["condition-1"]
    del condition["triggerPolicy"]
    path.write_text(yaml.safe_dump_all(documents))
    problems = lint.check_pipeline(path)
    assert any("export does not run after evaluate" in problem for problem in problems), problems
    assert any("register is not behind the quality gate" in problem for problem in problems), problems


def test_caching_and_retries(compiled):
    spec = next(yaml.safe_load_all(compiled.read_text()))
    tasks = {name: task for name, task, _, _ in lint.all_tasks(spec["root"]["dag"], spec)}
    stage_tasks = {lint.stage_of(task): task for task in tasks.values()}
    assert stage_tasks["preprocess"]["cachingOptions"].get("enableCache") is True
    assert stage_tasks["tokenize"]["cachingOptions"].get("enableCache") is True
    assert not stage_tasks["train"]["cachingOptions"].get("enableCache")
    assert "register" not in stage_tasks or not stage_tasks["register"]["cachingOptions"].get("enableCache")
    containers = list(tasks.values())
    assert all(task["retryPolicy"]["maxRetryCount"] == 3 for task in containers)
    # The cache key of preprocess includes the source's content fingerprint.
    assert "expected_source_fingerprint" in stage_tasks["preprocess"]["inputs"]["parameters"]


def test_sweep_is_a_parallel_for_with_a_limit(tmp_path):
    path = compile_pipeline(KubeflowSettings(sweep_parallelism=3), tmp_path / "sweep.yaml", "sweep")
    spec = next(yaml.safe_load_all(path.read_text()))
    loops = [task for task in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in task]
    assert len(loops) == 1 and loops[0]["iteratorPolicy"]["parallelismLimit"] == 3
    assert loops[0]["parameterIterator"]["items"]["inputParameter"].endswith("sweep_configs")
    # select_best waits for the whole loop and gets every trial's model URI, collected by the loop.
    [loop_name] = [name for name, task in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in task]
    select_best = spec["root"]["dag"]["tasks"]["select-best"]
    assert select_best["dependentTasks"] == [loop_name]
    collected = select_best["inputs"]["parameters"]["model_uris"]["taskOutputParameter"]
    assert collected == {"producerTask": loop_name, "outputParameterKey": "pipelinechannel--train-model_uri"}


def test_kfold_is_a_parallel_for_of_folds_and_one_report_of_them_all(tmp_path):
    path = compile_pipeline(KubeflowSettings(sweep_parallelism=4), tmp_path / "kfold.yaml", "kfold")
    spec = next(yaml.safe_load_all(path.read_text()))
    [loop_name] = [name for name, task in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in task]
    loop = spec["root"]["dag"]["tasks"][loop_name]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4 and loop["parameterIterator"]["items"]["inputParameter"].endswith(
        "kfold_configs"
    )
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert {"tokenize", "train", "evaluate"} <= set(inner)
    assert set(inner["tokenize"]["inputs"]["parameters"]) >= {"num_folds", "fold", "fold_seed"}
    report = spec["root"]["dag"]["tasks"]["kfold-report"]
    assert report["dependentTasks"] == [loop_name]
    collected = report["inputs"]["parameters"]["evaluation_uris"]["taskOutputParameter"]
    assert collected == {"producerTask": loop_name, "outputParameterKey": "pipelinechannel--evaluate-evaluation_uri"}


def test_register_takes_only_the_onnx_export_as_an_artifact(compiled):
    """The launcher downloads every input artifact whole; register reads a few small files of the
    model, evaluation and data, so it gets their URIs and fetches just those files."""
    spec = next(yaml.safe_load_all(compiled.read_text()))
    if "comp-register" not in spec["components"]:
        pytest.skip("the K-fold pipeline registers nothing")
    register = spec["components"]["comp-register"]["inputDefinitions"]
    assert set(register["artifacts"]) == {"onnx"}
    assert {"model_uri", "evaluation_uri", "data_uri"} <= set(register["parameters"])


def test_the_gate_is_declared_once(tmp_path):
    """register runs on evaluate's verdict, and evaluate and register read each task's threshold from the
    one pipeline parameter its declaration names (each task's Gate, components/lib/tasks/)."""
    from components.lib.quality_gate import PASSES_OUTPUT
    from components.lib.tasks import all_gates

    spec = next(yaml.safe_load_all(compile_pipeline(KubeflowSettings(), tmp_path / "pipeline.yaml").read_text()))
    condition = spec["root"]["dag"]["tasks"]["condition-1"]["triggerPolicy"]["condition"]
    assert condition == f"inputs.parameter_values['pipelinechannel--evaluate-{PASSES_OUTPUT}'] == true"
    evaluate = spec["root"]["dag"]["tasks"]["evaluate"]["inputs"]["parameters"]
    register = spec["components"]["comp-condition-1"]["dag"]["tasks"]["register"]["inputs"]["parameters"]
    for task_gate in all_gates():
        assert evaluate[task_gate.flag]["componentInputParameter"] == task_gate.parameter
        assert register[task_gate.flag]["componentInputParameter"] == f"pipelinechannel--{task_gate.parameter}"


def test_tracking_settings_reach_every_task_and_credentials_only_from_a_secret(tmp_path):
    settings = KubeflowSettings(
        tracking_env={"MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000", "MLFLOW_EXPERIMENT_NAME": "textclf"},
        tracking_secret_name="textclf-tracking",
        tracking_secret_keys=["MLFLOW_TRACKING_TOKEN"],
    )
    compiled = compile_pipeline(settings, tmp_path / "pipeline.yaml")
    docs = list(yaml.safe_load_all(compiled.read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors(compiled).items():
        env = {entry["name"]: entry["value"] for entry in executor["container"]["env"]}
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow:5000", name
        secrets = {source.get("secretName"): source["keyToEnv"] for source in platform[name]["secretAsEnv"]}
        assert secrets["textclf-tracking"] == [{"envVar": "MLFLOW_TRACKING_TOKEN", "secretKey": "MLFLOW_TRACKING_TOKEN"}], name
    assert lint.check_pipeline(compiled) == []
    # On several nodes train_job hands them on to the TrainJob's node containers (tests/test_train_job.py).
    several = compile_pipeline(dataclasses.replace(settings, train_nodes=2), tmp_path / "nodes.yaml")
    arguments = next(yaml.safe_load_all(several.read_text()))["root"]["dag"]["tasks"]["train-job"]["inputs"]["parameters"]
    handed_on = {name: arguments[name]["runtimeValue"]["constant"] for name in ("tracking_env_names", "tracking_secret_name",
                                                                               "tracking_secret_keys")}  # fmt: skip
    assert handed_on == {"tracking_env_names": "MLFLOW_EXPERIMENT_NAME,MLFLOW_TRACKING_URI", "tracking_secret_name": "textclf-tracking",
                         "tracking_secret_keys": "MLFLOW_TRACKING_TOKEN"}  # fmt: skip


def test_the_hub_token_goes_only_to_the_tasks_that_read_the_hub_and_to_the_trainjobs_nodes(tmp_path):
    """A private or gated hf:// dataset or base model: preprocess, tokenize and train read the Hub, no other task gets the token."""
    hub_token = ("textclf-hub-token", [{"envVar": "HF_TOKEN", "secretKey": "HF_TOKEN"}])

    def stages_given_the_token(compiled: Path) -> dict[str, bool]:
        """Each stage of the compiled YAML, and whether every one of its tasks takes the token (none may half take it)."""
        platform = list(yaml.safe_load_all(compiled.read_text()))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        given: dict[str, set[bool]] = {}
        for name, executor in executors(compiled).items():
            stage = executor["container"]["command"][-1].removeprefix("components.")
            sources = platform.get(name, {}).get("secretAsEnv", [])
            given.setdefault(stage, set()).add(hub_token in [(source.get("secretName"), source["keyToEnv"]) for source in sources])
        assert all(len(answers) == 1 for answers in given.values()), given
        return {stage: answers.pop() for stage, answers in given.items()}

    for variant in OUTPUT_NAMES:
        compiled = compile_pipeline(KubeflowSettings(hub_token_secret_name="textclf-hub-token"), tmp_path / f"{variant}.yaml", variant)
        given = stages_given_the_token(compiled)
        assert {stage for stage, has in given.items() if has} == {"preprocess", "tokenize", "train"}, variant
        assert lint.check_pipeline(compiled) == []
        assert not any(stages_given_the_token(compile_pipeline(KubeflowSettings(), tmp_path / f"{variant}-none.yaml", variant)).values())
    several = compile_pipeline(KubeflowSettings(hub_token_secret_name="textclf-hub-token", train_nodes=2), tmp_path / "nodes.yaml")
    arguments = next(yaml.safe_load_all(several.read_text()))["root"]["dag"]["tasks"]["train-job"]["inputs"]["parameters"]
    assert arguments["hub_token_secret_name"]["runtimeValue"]["constant"] == "textclf-hub-token"
    assert {stage for stage, has in stages_given_the_token(several).items() if has} == {"preprocess", "tokenize"}  # nodes: test_train_job


@pytest.mark.parametrize(
    "settings, complaint",
    [
        ({"tracking_env": {"WANDB_API_KEY": "x"}}, "kubeflow.tracking_env.WANDB_API_KEY: holds a credential's name"),
        ({"tracking_env": {"MLFLOW_TRACKING_TOKEN": "x"}}, "kubeflow.tracking_env.MLFLOW_TRACKING_TOKEN: holds a credential's name"),
        # A credential inside a value (issue 27): the name is harmless, the value is not.
        (
            {"tracking_env": {"MLFLOW_TRACKING_URI": "https://user:password@mlflow.example.com"}},
            "kubeflow.tracking_env.MLFLOW_TRACKING_URI: holds a URL with a password in it",
        ),
        ({"tracking_env": {"NOTE": "key AKIAABCDEFGHIJKLMNOP"}}, "kubeflow.tracking_env.NOTE: holds an AWS access key id"),
        ({"tracking_secret_name": "textclf-tracking"}, "tracking_secret_name and kubeflow.tracking_secret_keys go together"),
    ],
)
def test_a_credential_in_the_tracking_environment_is_refused_at_compile_time(tmp_path, settings, complaint):
    with pytest.raises(UserError, match=complaint):
        compile_pipeline(KubeflowSettings(**settings), tmp_path / "pipeline.yaml")


# What a stage hands back (components/lib/cli.py, StageResult), keyed by its outputs' names.
RESULT_FIELDS = ("parameters", "artifact_metadata", "artifact_uri_parameters", "artifact_uris")


def top_level_dicts(node):
    """The dict literals a value is made of: `{...}`, or `{...} | {...}`."""
    if isinstance(node, ast.Dict):
        return [node]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return top_level_dicts(node.left) + top_level_dicts(node.right)
    return []


def retyped_output_names(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) for each output name typed as a string in `source`: a key (or, for artifact_uri_parameters,
    a value) of a StageResult field, or the subscript of `.outputs[...]`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        named = []
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "outputs":
            named.append(node.slice)
        elif isinstance(node, ast.keyword) and node.arg in RESULT_FIELDS:
            for literal in top_level_dicts(node.value):
                named += literal.keys
                named += literal.values if node.arg == "artifact_uri_parameters" else []
        found += [(item.lineno, item.value) for item in named if isinstance(item, ast.Constant) and item.value in names]
    return found


# Literals still typed in files not yet changed over: (file, name). Remove an entry when its file uses the
# constant (the test fails on an entry no longer there, so the list stays honest).
NOT_YET_NAMED: set[tuple[str, str]] = set()  # (file, name) of retyped output names left to name


def test_outputs_are_named_by_their_constants_never_retyped():
    """Each output's name is declared once (components/lib/stage_outputs.py; evaluate's verdict in
    components/lib/quality_gate.py): the components' StageResults and the DAG's task.outputs[...] use the
    constant, so a component and the pipeline cannot disagree on a name."""
    from components.lib import stage_outputs
    from components.lib.quality_gate import PASSES_OUTPUT
    from tests.conftest import REPO

    names = {value for name, value in vars(stage_outputs).items() if name.endswith(("_ARTIFACT", "_OUTPUT"))} | {PASSES_OUTPUT}
    assert {"tokenized", "evaluation_uri", "registered", "url"} <= names
    found = {
        (str(path.relative_to(REPO)), line, name)
        for package in ("components", "pipelines")
        for path in sorted((REPO / package).rglob("*.py"))
        for line, name in retyped_output_names(path.read_text(), names)
    }
    retyped = sorted(f"{path}:{line}: {name!r}" for path, line, name in found if (path, name) not in NOT_YET_NAMED)
    assert not retyped, "use the constant of components/lib/stage_outputs.py:\n" + "\n".join(retyped)
    named_now = NOT_YET_NAMED - {(path, name) for path, _, name in found}
    assert not named_now, f"named now: remove {sorted(named_now)} from NOT_YET_NAMED"
    assert retyped_output_names('task.outputs["model"]\nStageResult(parameters={"a": 1} | {"version": v})', names) == [
        (1, "model"),
        (2, "version"),
    ]


def test_with_several_train_nodes_the_train_step_is_a_trainjob_on_the_cuda_image(tmp_path):
    """make compile CONFIG=configs/multinode.yaml: train_job, on a CPU node, creates a TrainJob of the CUDA image."""
    settings = KubeflowSettings(train_nodes=2)
    path = compile_pipeline(settings, tmp_path / "pipeline.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" not in tasks and tasks["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-job"
    arguments = tasks["train-job"]["inputs"]["parameters"]
    assert arguments["nodes"]["runtimeValue"]["constant"] == 2 and arguments["image"]["runtimeValue"]["constant"] == settings.cuda_image
    assert arguments["gpus_per_node"] == {"componentInputParameter": "gpu_count"}
    container = spec["deploymentSpec"]["executors"]["exec-train-job"]["container"]
    assert container["image"] == settings.cpu_image and "accelerator" not in container.get("resources", {})
    assert lint.check_pipeline(path) == []
