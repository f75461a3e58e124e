"""The serving lint: deploy's InferenceService passes Knative's default field masks and KServe's
resource defaults, and each check refuses the defect it names."""

import copy

import pytest

from pipelines import serving_lint


@pytest.fixture(scope="module")
def services() -> dict:
    return serving_lint.rendered_services()


def test_what_deploy_renders_passes(services):
    assert set(services) == {"deploy at the defaults", "deploy with serving_cpu=4 and a pull Secret", "deploy as a canary"}
    assert services["deploy with serving_cpu=4 and a pull Secret"]["spec"]["predictor"]["imagePullSecrets"] == [{"name": "regcred"}]
    for where, manifest in services.items():
        assert serving_lint.check_inference_service(manifest, where) == []
    assert services["deploy as a canary"]["spec"]["predictor"]["canaryTrafficPercent"] == 10


def predictor(manifest):
    return manifest["spec"]["predictor"]


def container(manifest):
    return predictor(manifest)["containers"][0]


@pytest.mark.parametrize(
    "defect, complaint",
    [
        (lambda m: predictor(m).update(securityContext={"runAsUser": 10001}), "refuses the pod field 'securityContext'"),
        (lambda m: predictor(m).update(nodeSelector={"a": "b"}), "refuses the pod field 'nodeSelector'"),
        (lambda m: predictor(m).update(automountServiceAccountToken=True), "automountServiceAccountToken only as false"),
        (
            lambda m: predictor(m)["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "x"}}),
            "refuses persistentVolumeClaim",
        ),
        (lambda m: container(m).update(lifecycle={}), "refuses the container field 'lifecycle'"),
        (lambda m: container(m)["securityContext"].update(seLinuxOptions={}), "refuses securityContext.seLinuxOptions"),
        (lambda m: container(m)["securityContext"].update(privileged=True), "privileged containers"),
        (lambda m: container(m)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "added capabilities"),
        (
            lambda m: container(m)["env"].append({"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
            "refuses fieldRef",
        ),
        (lambda m: container(m)["resources"]["limits"].pop("cpu"), "a cpu request without a limit"),
        (lambda m: container(m)["resources"]["limits"].pop("memory"), "a memory request without a limit"),
        (lambda m: container(m)["readinessProbe"].update(timeoutSeconds=3), "timeoutSeconds or failureThreshold without periodSeconds"),
    ],
)
def test_each_check_refuses_its_defect(services, defect, complaint):
    manifest = copy.deepcopy(services["deploy at the defaults"])
    defect(manifest)
    problems = serving_lint.check_inference_service(manifest, "x")
    assert len(problems) == 1 and complaint in problems[0], problems


def test_the_command_fails_on_a_defect(monkeypatch, capsys):
    rendered = serving_lint.rendered_services()
    container(rendered["deploy with serving_cpu=4 and a pull Secret"])["resources"]["limits"].pop("cpu")
    monkeypatch.setattr(serving_lint, "rendered_services", lambda: rendered)
    assert serving_lint.main() == 1
    assert (
        "deploy with serving_cpu=4 and a pull Secret: container kserve-container: a cpu request without a limit" in capsys.readouterr().err
    )
