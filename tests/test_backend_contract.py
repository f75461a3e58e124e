"""The rules of the real Kubeflow backend that kfp.local does not hold the pipelines to
(docs/kubeflow-contract.md): each checked on today's compiled YAML, and each check seen refusing
the defect it names."""

import json
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from components.lib.cli import StageResult, write_executor_output
from components.lib.errors import UserError
from pipelines import backend_rules, lint
from pipelines.compile import compile_pipeline
from pipelines.config import KubeflowSettings
from pipelines.sweep import Round


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    path = compile_pipeline(KubeflowSettings(), tmp_path_factory.mktemp("sweep") / "sweep.yaml", "sweep")
    return next(yaml.safe_load_all(path.read_text()))


def test_the_sweep_releases_select_bests_model_with_no_importer(sweep):
    assert not [name for name, executor in sweep["deploymentSpec"]["executors"].items() if "importer" in executor]
    tasks = sweep["root"]["dag"]["tasks"]
    for stage in ("evaluate", "export"):
        model = tasks[stage]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert model == {"producerTask": "select-best", "outputArtifactKey": "model"}, stage


def test_a_sweeps_trials_are_never_cached_and_the_adjustment_is_logged(tmp_path, caplog):
    """A cached trial's model lives in an earlier run's folder: the launcher would refuse select_best's Model."""
    settings = KubeflowSettings(cache_train=True)
    sweep = next(yaml.safe_load_all(compile_pipeline(settings, tmp_path / "sweep.yaml", "sweep").read_text()))
    trains = [task for _, task, _, _ in lint.all_tasks(sweep["root"]["dag"], sweep) if lint.stage_of(task) == "train"]
    assert trains and not any(task.get("cachingOptions", {}).get("enableCache") for task in trains)
    assert "kubeflow.cache_train: not for the sweep's trials" in caplog.text
    training = next(yaml.safe_load_all(compile_pipeline(settings, tmp_path / "pipeline.yaml").read_text()))
    assert training["root"]["dag"]["tasks"]["train"]["cachingOptions"]["enableCache"] is True


@dsl.container_component
def make_uri(uri: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="registry.example.com/uri:1", command=["sh", "-c", 'echo s3://bucket/model > "$0"', uri])


@dsl.pipeline(name="import-from-a-task")
def imports_a_task_output():
    dsl.importer(artifact_uri=make_uri().output, artifact_class=dsl.Model)


@dsl.pipeline(name="import-from-a-parameter")
def imports_a_pipeline_parameter(uri: str = "s3://bucket/model"):
    dsl.importer(artifact_uri=uri, artifact_class=dsl.Model)


def compiled_spec(pipeline, tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "compiled.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path, next(yaml.safe_load_all(path.read_text()))


def test_the_lint_refuses_an_importer_whose_uri_is_a_task_output(tmp_path):
    path, spec = compiled_spec(imports_a_task_output, tmp_path)
    (problem,) = backend_rules.check_importers(path, spec)
    assert "importer importer takes its URI from the output of make-uri" in problem
    path, spec = compiled_spec(imports_a_pipeline_parameter, tmp_path)
    assert backend_rules.check_importers(path, spec) == []


@pytest.fixture(scope="module")
def halving_sweep(tmp_path_factory) -> tuple[Path, dict]:
    """Three rounds: 9 trials, then 3, then 1 (pipelines/sweep.py)."""
    rounds = (Round(9, 1), Round(3, 3), Round(1, 0))
    path = compile_pipeline(KubeflowSettings(), tmp_path_factory.mktemp("halving") / "sweep.yaml", "sweep", rounds)
    return path, next(yaml.safe_load_all(path.read_text()))


def test_each_halving_round_loops_over_the_survivors_of_the_round_before(halving_sweep):
    path, spec = halving_sweep
    tasks = spec["root"]["dag"]["tasks"]
    loops = sorted(name for name, task in tasks.items() if "parameterIterator" in task)
    assert len(loops) == 3 and tasks[loops[0]]["parameterIterator"]["items"]["inputParameter"].endswith("sweep_configs")
    for loop, selector in zip(loops[1:], ("select-survivors", "select-survivors-2")):
        items = tasks[loop]["parameterIterator"]["items"]["inputParameter"]
        assert tasks[loop]["inputs"]["parameters"][items]["taskOutputParameter"] == {
            "producerTask": selector,
            "outputParameterKey": "survivors",
        }
    assert [
        tasks[name]["inputs"]["parameters"]["keep"]["runtimeValue"]["constant"] for name in ("select-survivors", "select-survivors-2")
    ] == [3, 1]
    assert lint.check_pipeline(path) == []


@pytest.mark.parametrize(("defect", "problem"), [
    ("keep 0", "which may be empty: the backend then fails the Collected fan-in after the loop"),
    ("keep from a parameter", "which may be empty"),
    ("a STRING output", "a STRING: the KFP driver counts a loop's items only in a LIST"),
])  # fmt: skip
def test_the_lint_refuses_a_loop_over_a_task_output_that_may_be_empty_or_no_list(defect, problem, halving_sweep, tmp_path):
    path, spec = halving_sweep
    broken = json.loads(json.dumps(spec))
    selector = broken["root"]["dag"]["tasks"]["select-survivors"]
    if defect == "keep 0":
        selector["inputs"]["parameters"]["keep"] = {"runtimeValue": {"constant": 0}}
    elif defect == "keep from a parameter":
        selector["inputs"]["parameters"]["keep"] = {"componentInputParameter": "epochs"}
    else:
        broken["components"]["comp-select-survivors"]["outputDefinitions"]["parameters"]["survivors"]["parameterType"] = "STRING"
    (found,) = backend_rules.check_loop_items(path, broken)
    assert problem in found and "iterates over select-survivors.survivors" in found


def executor_input(tmp_path: Path, assigned: str) -> str:
    return json.dumps({
        "outputs": {
            "artifacts": {"model": {"artifacts": [{"name": "model", "uri": assigned, "metadata": {}}]}},
            "parameters": {"model_uri": {"outputFile": str(tmp_path / "model_uri")}},
            "outputFile": str(tmp_path / "executor_output.json"),
        }
    })  # fmt: skip


RUN_ROOT = "s3://pipelines/root/textclf-sweep/run-1"


def test_a_stage_points_an_output_at_an_existing_folder_of_the_same_run(tmp_path):
    trial = f"{RUN_ROOT}/train/4242/model"
    result = StageResult(parameters={"model_uri": trial}, artifact_uris={"model": trial})
    write_executor_output(executor_input(tmp_path, f"{RUN_ROOT}/select-best/4343/model"), result)
    written = json.loads((tmp_path / "executor_output.json").read_text())
    assert written["artifacts"]["model"]["artifacts"][0]["uri"] == trial
    assert written["parameterValues"] == {"model_uri": trial}


@pytest.mark.parametrize("target", ["s3://elsewhere/model", "s3://pipelines/root/textclf-sweep/run-0/train/4242/model"])
def test_an_output_pointed_outside_the_run_is_refused(tmp_path, target):
    """The launcher would refuse it after the stage's work: KeyFromURI needs the run root as prefix."""
    result = StageResult(artifact_uris={"model": target})
    with pytest.raises(UserError, match=f"output model: {target} is not in this run's folder {RUN_ROOT}/"):
        write_executor_output(executor_input(tmp_path, f"{RUN_ROOT}/select-best/4343/model"), result)
    assert not (tmp_path / "executor_output.json").exists()


@pytest.fixture(scope="module")
def training(tmp_path_factory) -> Path:
    return compile_pipeline(KubeflowSettings(), tmp_path_factory.mktemp("training") / "pipeline.yaml")


def mutated(compiled: Path, tmp_path: Path, change) -> Path:
    documents = list(yaml.safe_load_all(compiled.read_text()))
    change(documents[0], documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"])
    path = tmp_path / compiled.name
    path.write_text(yaml.safe_dump_all(documents))
    return path


def root_parameter(spec: dict, name: str) -> dict:
    return spec["root"]["inputDefinitions"]["parameters"][name]


@pytest.mark.parametrize(
    "change, complaint",
    [
        # resolveInputParameterStr refuses an empty name: every task would fail at its driver.
        (lambda spec, platform: root_parameter(spec, "s3_secret_name").update(defaultValue=""), "evaluate: the Secret name is empty"),
        (lambda spec, platform: platform["exec-evaluate"].update(imagePullSecret=[{"secretNameParameter": {"runtimeValue": {"constant": ""}}}]),
         "evaluate: the image pull Secret is empty"),
        (lambda spec, platform: platform["exec-evaluate"].update(
            imagePullSecret=[{"secretNameParameter": {"componentInputParameter": "gpu_node_selector"}}]),
         "evaluate: the image pull Secret is bound to a STRUCT parameter; the KFP driver needs STRING"),
        (lambda spec, platform: platform["exec-evaluate"].update(
            pvcMount=[{"pvcNameParameter": {"componentInputParameter": "epochs"}, "mountPath": "/data"}]),
         "evaluate: the PVC name is bound to a NUMBER_INTEGER parameter"),
        (lambda spec, platform: platform["exec-evaluate"].update(
            configMapAsEnv=[{"configMapNameParameter": {"componentInputParameter": "gpu_toleration"}, "keyToEnv": []}]),
         "evaluate: the ConfigMap name is bound to a STRUCT parameter"),
        (lambda spec, platform: platform["exec-evaluate"].update(imagePullPolicy="Sometimes"),
         "evaluate: image pull policy 'Sometimes'; the KFP driver accepts only Always, IfNotPresent, Never"),
    ],
)  # fmt: skip
def test_the_lint_refuses_a_name_the_driver_cannot_resolve(training, tmp_path, change, complaint):
    problems = lint.check_pipeline(mutated(training, tmp_path, change))
    assert any(complaint in problem for problem in problems), problems


DIGEST = "sha256:" + "ab" * 32


def test_images_pinned_by_digest_pulled_with_a_policy_and_a_secret(tmp_path):
    settings = KubeflowSettings(cpu_image_digest=DIGEST, cuda_image_digest=DIGEST.replace("ab", "cd"),
                                image_pull_policy="IfNotPresent", image_pull_secrets=["regcred"])  # fmt: skip
    path = compile_pipeline(settings, tmp_path / "pipeline.yaml")
    spec, platform = lint.load(path)
    images = {name: executor["container"]["image"] for name, executor in spec["deploymentSpec"]["executors"].items()}
    assert images["exec-train"] == f"ghcr.io/textclf/textclf-cuda:0.1.0@{DIGEST.replace('ab', 'cd')}"
    assert images["exec-evaluate"] == f"ghcr.io/textclf/textclf-cpu:0.1.0@{DIGEST}"
    deploy = next(task for _, task, _, _ in lint.all_tasks(spec["root"]["dag"], spec) if lint.stage_of(task) == "deploy")
    assert deploy["inputs"]["parameters"]["image_pull_secrets"]["runtimeValue"]["constant"] == "regcred"  # the predictor's too
    for name, config in platform.items():
        assert config["imagePullPolicy"] == "IfNotPresent", name
        assert [item["secretNameParameter"]["runtimeValue"]["constant"] for item in config["imagePullSecret"]] == ["regcred"], name
    assert lint.check_pipeline(path) == []


def test_temporary_credentials_reach_every_task_when_the_secret_holds_a_session_token(training):
    _, platform = lint.load(training)
    for name, config in platform.items():
        optional = [item for item in config["secretAsEnv"] if item.get("optional")]
        assert [entry["envVar"] for item in optional for entry in item["keyToEnv"]] == ["AWS_SESSION_TOKEN"], name


@pytest.mark.parametrize(
    "settings, complaint",
    [
        ({"cpu_image_digest": "abc123"}, "kubeflow.cpu_image_digest: 'abc123' is not a digest"),
        ({"image_pull_policy": "always"}, "kubeflow.image_pull_policy: 'always' is not one of Always, IfNotPresent, Never"),
        ({"image_pull_secrets": ["Reg_Cred"]}, "kubeflow.image_pull_secrets: 'Reg_Cred' is not a Secret name"),
    ],
)
def test_bad_image_settings_are_refused_at_compile_time(tmp_path, settings, complaint):
    with pytest.raises(UserError, match=complaint):
        compile_pipeline(KubeflowSettings(**settings), tmp_path / "pipeline.yaml")
    assert not (tmp_path / "pipeline.yaml").exists()


def test_every_task_has_the_store_in_its_cache_key(tmp_path):
    """The backend's cache key leaves out the pipeline root, endpoint and Secret: a task whose inputs
    match a run against another store would reuse outputs that live there."""
    one = next(yaml.safe_load_all(compile_pipeline(KubeflowSettings(), tmp_path / "one" / "pipeline.yaml").read_text()))
    other_root = KubeflowSettings(pipeline_root="s3://other-bucket/root")
    other = next(yaml.safe_load_all(compile_pipeline(other_root, tmp_path / "other" / "pipeline.yaml").read_text()))
    scope = one["root"]["inputDefinitions"]["parameters"]["cache_scope"]["defaultValue"]
    assert scope != other["root"]["inputDefinitions"]["parameters"]["cache_scope"]["defaultValue"]
    for _, task, _, _ in lint.all_tasks(one["root"]["dag"], one):
        binding = task["inputs"]["parameters"]["cache_scope"]["componentInputParameter"]
        assert binding.endswith("cache_scope"), task["componentRef"]


def test_the_lint_refuses_a_task_without_the_cache_scope(training, tmp_path):
    def drop(spec, platform):
        del spec["root"]["dag"]["tasks"]["evaluate"]["inputs"]["parameters"]["cache_scope"]

    problems = lint.check_pipeline(mutated(training, tmp_path, drop))
    assert any("evaluate has no cache_scope input; a cached result could point into another store" in problem for problem in problems)


@pytest.mark.parametrize("variant, component", [("training", "comp-export"), ("sweep", "comp-train")])
def test_the_lint_refuses_a_stage_that_takes_the_whole_tokenized_dataset(variant, component, tmp_path):
    """The launcher downloads an input artifact whole: export would fetch the train split to read the test
    split, a sweep's trials (inside the loop) the test split."""
    compiled = compile_pipeline(KubeflowSettings(), tmp_path / "compiled" / f"{variant}.yaml", variant)

    def whole_dataset(spec, platform):
        artifacts = spec["components"][component].setdefault("inputDefinitions", {}).setdefault("artifacts", {})
        artifacts["tokenized"] = {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}

    problems = lint.check_pipeline(mutated(compiled, tmp_path, whole_dataset))
    stage = component.removeprefix("comp-")
    assert any(f"{stage} takes the Dataset 'tokenized' as an artifact" in problem for problem in problems), problems


def test_the_lint_refuses_a_task_that_could_run_as_root(training, tmp_path):
    problems = lint.check_pipeline(mutated(training, tmp_path, lambda spec, platform: platform["exec-export"].pop("securityContext")))
    assert any("export has no securityContext running it as a non-root user" in problem for problem in problems), problems


CONTRACT = Path(__file__).parent.parent / "docs" / "kubeflow-contract.md"


def contract_rows() -> list[dict]:
    rows = []
    for line in CONTRACT.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("rule", "---"):
            rows.append(dict(zip(("rule", "does", "source", "enforced_by"), cells)))
    return rows


def enforcing_checks(text: str) -> list[tuple[str, str]]:
    """`path: function` and `tests/file.py::test` references of an "enforced by" cell."""
    references = []
    for part in text.replace("`", "").split(";"):
        part = part.strip()
        if "::" in part:
            references.append(tuple(part.split("::")))
        else:
            path, _, name = part.partition(": ")
            references.append((path, name))
    return references


def test_every_row_of_the_contract_names_its_source_and_a_check_that_exists():
    import importlib

    rows = contract_rows()
    assert len(rows) >= 20 and len({row["rule"] for row in rows}) == len(rows)
    for row in rows:
        assert row["does"] and "`" in row["source"], row["rule"]
        for path, name in enforcing_checks(row["enforced_by"]):
            if path.startswith("tests/"):
                assert f"def {name}(" in (CONTRACT.parent.parent / path).read_text(), f"{row['rule']}: no test {name} in {path}"
            else:
                module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
                assert callable(getattr(module, name, None)), f"{row['rule']}: {path} has no {name}"


def test_every_backend_rule_check_is_a_row_of_the_contract():
    named = " ".join(row["enforced_by"] for row in contract_rows())
    checks = [name for name in dir(backend_rules) if name.startswith("check_") and name != "check_container_task"]
    assert checks and all(f"backend_rules.py: {name}" in named for name in checks), [c for c in checks if c not in named]
