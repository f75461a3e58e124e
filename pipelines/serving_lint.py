"""`make lint`, serving part: the InferenceService that deploy renders, checked against what KServe
and Knative accept with their default settings.

    python -m pipelines.serving_lint

KServe's default deployment mode (Knative; `defaultDeploymentMode` in its inferenceservice-config)
turns the predictor into a Knative Service, whose webhook refuses a pod spec with any field its
field masks do not let through (knative/serving pkg/apis/serving/fieldmask.go, `PodSpecMask` and
the masks below it; k8s_validation.go, `ValidatePodSpec` -> `CheckDisallowedFields`: "must not
set the field(s)"). The masks here are those of the default feature flags (pkg/apis/config/
features.go, `defaultFeaturesConfig`), which a cluster admin may widen but this project does not ask
them to. KServe fills a missing CPU or memory limit with its configured default, "1" and "2Gi"
(pkg/apis/serving/v1beta1/inference_service_defaults.go, `setResourceRequirementDefaults`), which a
larger request then exceeds. docs/kubeflow-contract.md lists each rule with its source.
"""

from __future__ import annotations

import sys

from components.lib.serving.inference_service import Canary, Predictor, render
from pipelines.parameters import pipeline_parameters

# knative/serving fieldmask.go at the default feature flags (v1.21.1, the version KServe v0.20 installs, to v1.23).
POD_SPEC_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks", "automountServiceAccountToken"}
CONTAINER_FIELDS = {
    "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy", "livenessProbe", "ports",
    "readinessProbe", "resources", "securityContext", "startupProbe", "terminationMessagePath", "terminationMessagePolicy",
    "volumeMounts",
}  # fmt: skip
SECURITY_CONTEXT_FIELDS = {
    "capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot", "allowPrivilegeEscalation",
    "seccompProfile", "privileged",
}  # fmt: skip
VOLUME_SOURCES = {"secret", "configMap", "projected", "emptyDir"}  # emptyDir: kubernetes.podspec-volumes-emptydir, Enabled
ENV_SOURCES = {"secretKeyRef", "configMapKeyRef"}  # fieldRef/resourceFieldRef need kubernetes.podspec-fieldref
RESOURCE_FIELDS = {"limits", "requests"}
KSERVE_RESOURCES = ("cpu", "memory")  # the two KServe gives a default limit when none is set


def kserve_component_fields() -> set[str]:
    """The predictor's own KServe fields (replicas, canary, ...), beside the pod spec it inlines."""
    from kubernetes import client

    from components.lib.serving.sdk import import_kserve

    kserve = import_kserve()
    return set(kserve.V1beta1PredictorSpec.attribute_map.values()) - set(client.V1PodSpec.attribute_map.values())


def check_inference_service(manifest: dict, where: str) -> list[str]:
    predictor = manifest["spec"]["predictor"]
    pod_fields = set(predictor) - kserve_component_fields()
    problems = [f"{where}: Knative refuses the pod field {name!r} by default" for name in sorted(pod_fields - POD_SPEC_FIELDS)]
    if predictor.get("automountServiceAccountToken") is True:
        problems.append(f"{where}: Knative accepts automountServiceAccountToken only as false")
    for volume in predictor.get("volumes", []):
        sources = set(volume) - {"name"}
        if not sources <= VOLUME_SOURCES:
            problems.append(f"{where}: volume {volume['name']}: Knative refuses {', '.join(sorted(sources - VOLUME_SOURCES))} by default")
    for container in predictor.get("containers", []):
        problems += check_container(container, f"{where}: container {container.get('name')}")
    return problems


def check_container(container: dict, where: str) -> list[str]:
    problems = [f"{where}: Knative refuses the container field {name!r}" for name in sorted(set(container) - CONTAINER_FIELDS)]
    context = container.get("securityContext", {})
    problems += [f"{where}: Knative refuses securityContext.{name}" for name in sorted(set(context) - SECURITY_CONTEXT_FIELDS)]
    if context.get("privileged") is True or context.get("capabilities", {}).get("add"):
        problems.append(f"{where}: Knative refuses privileged containers and added capabilities by default")
    for variable in container.get("env", []):
        sources = set(variable.get("valueFrom", {}))
        if not sources <= ENV_SOURCES:
            problems.append(f"{where}: env {variable['name']}: Knative refuses {', '.join(sorted(sources - ENV_SOURCES))} by default")
    resources = container.get("resources", {})
    problems += [f"{where}: Knative refuses resources.{name}" for name in sorted(set(resources) - RESOURCE_FIELDS)]
    for name in KSERVE_RESOURCES:
        if name in resources.get("requests", {}) and name not in resources.get("limits", {}):
            problems.append(f"{where}: a {name} request without a limit; KServe sets its default limit, which a larger request exceeds")
    probe = container.get("readinessProbe", {})
    if ("timeoutSeconds" in probe or "failureThreshold" in probe) and not probe.get("periodSeconds"):
        problems.append(f"{where}: Knative refuses a readiness probe's timeoutSeconds or failureThreshold without periodSeconds")
    return problems


def rendered_services() -> dict[str, dict]:
    """deploy's InferenceService at the pipeline's defaults, with more than one CPU and a pull Secret, and as a canary."""
    defaults = {parameter.name: parameter.default for parameter in pipeline_parameters()[0]}
    predictor = Predictor(
        service_name="lint", namespace="lint", image="registry.example.com/textclf-cpu:1", registry_uri="s3://bucket/registry",
        model_name="lint", version=2, s3_secret_name=defaults["s3_secret_name"], s3_settings={"AWS_REGION": "us-east-1"},
        min_replicas=defaults["serving_min_replicas"], max_replicas=defaults["serving_max_replicas"],
        cpu=defaults["serving_cpu"], memory=defaults["serving_memory"],
    )  # fmt: skip
    four_cpus = Predictor(**{**predictor.__dict__, "cpu": "4", "image_pull_secrets": ("regcred",)})
    return {
        "deploy at the defaults": render(predictor),
        "deploy with serving_cpu=4 and a pull Secret": render(four_cpus),
        "deploy as a canary": render(predictor, Canary(defaults["serving_canary_traffic_percent"], 1)),
    }


def main() -> int:
    problems = [problem for where, manifest in rendered_services().items() for problem in check_inference_service(manifest, where)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("serving lint: the rendered InferenceService passes Knative's default field masks and KServe's resource defaults")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
