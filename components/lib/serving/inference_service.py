"""A KServe InferenceService for one registry version: this project's CPU image as a custom predictor.

The predictor's container runs `python3 -m components.serve` on the version, pinned by number (an
alias would move under a running service). It reads the registry with the pipeline's own S3
Secret, as environment variables, so no key is in the manifest. Built with the kserve SDK's own
models, so a field KServe does not know is an error here, not on the cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TypeGuard

from components.lib.errors import UserError
from components.lib.runtime import IMAGE_USER_ID, S3_CREDENTIAL_KEYS, S3_OPTIONAL_CREDENTIAL_KEYS
from components.lib.serving.sdk import KSERVE_HTTP_PORT, import_kserve

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
KIND = "InferenceService"
REGISTRY_VERSION_ANNOTATION = "textclf.io/registry-version"
# On a canary: the version that keeps the rest of the traffic, so that a deploy of the same version
# again (a retried task) keeps the split instead of promoting the canary.
STABLE_VERSION_ANNOTATION = "textclf.io/stable-version"
SPEC_ANNOTATION = "textclf.io/spec-sha256"
MODEL_NAME_LABEL = "textclf.io/model-name"
PREDICTOR_CONTAINER = "kserve-container"  # the name KServe gives a custom predictor's container
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")


@dataclass(frozen=True)
class Predictor:
    """What the InferenceService serves, and with which resources."""

    service_name: str
    namespace: str
    image: str
    registry_uri: str
    model_name: str
    version: int
    s3_secret_name: str
    s3_settings: dict[str, str] = field(default_factory=dict)
    min_replicas: int = 1
    max_replicas: int = 3
    cpu: str = "1"
    memory: str = "2Gi"
    image_pull_secrets: tuple[str, ...] = ()


def service_name_for(model_name: str, given: str = "") -> str:
    """`given`, or the model name as a DNS label (KServe names Kubernetes objects after the service)."""
    name = given or re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise UserError(f"--service_name: {name!r} is not a DNS label (lowercase letters, digits and '-', at most 63); pass one")
    return name


@dataclass(frozen=True)
class Canary:
    """A share of the traffic for the new version; the rest stays on `stable_version`'s revision."""

    percent: int
    stable_version: int


def render(predictor: Predictor, canary: Canary | None = None) -> dict:
    """The InferenceService as the JSON the Kubernetes API takes."""
    kserve = import_kserve()
    from kubernetes import client

    spec = kserve.V1beta1PredictorSpec(
        containers=[serving_container(predictor, client)],
        volumes=[client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())],
        min_replicas=predictor.min_replicas,
        max_replicas=predictor.max_replicas,
        canary_traffic_percent=canary.percent if canary else None,
        image_pull_secrets=[client.V1LocalObjectReference(name=name) for name in predictor.image_pull_secrets] or None,
    )
    annotations = {REGISTRY_VERSION_ANNOTATION: str(predictor.version), "serving.kserve.io/enable-prometheus-scraping": "true"}
    if canary:
        annotations[STABLE_VERSION_ANNOTATION] = str(canary.stable_version)
    service = kserve.V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind=KIND,
        metadata=client.V1ObjectMeta(
            name=predictor.service_name,
            namespace=predictor.namespace,
            labels={MODEL_NAME_LABEL: predictor.model_name, "app.kubernetes.io/part-of": "textclf"},
            annotations=annotations,
        ),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=spec),
    )
    manifest = client.ApiClient().sanitize_for_serialization(service)
    manifest["metadata"]["annotations"][SPEC_ANNOTATION] = spec_digest(manifest)
    return manifest


def spec_digest(manifest: dict) -> str:
    """The rendered spec's sha256: the API server adds defaults to a stored spec, so it is compared by this."""
    return hashlib.sha256(json.dumps(manifest["spec"], sort_keys=True).encode()).hexdigest()


def runs_this_spec(existing: dict | None, manifest: dict) -> TypeGuard[dict]:
    annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(SPEC_ANNOTATION) == manifest["metadata"]["annotations"][SPEC_ANNOTATION]


def serving_container(predictor: Predictor, client):
    args = ["--registry_uri", predictor.registry_uri, "--model_name", predictor.model_name,
            "--version", str(predictor.version), "--port", str(KSERVE_HTTP_PORT)]  # fmt: skip

    def from_secret(key: str, optional: bool = False):
        selector = client.V1SecretKeySelector(name=predictor.s3_secret_name, key=key, optional=optional or None)
        return client.V1EnvVarSource(secret_key_ref=selector)

    credentials = [client.V1EnvVar(name=key, value_from=from_secret(key)) for key in S3_CREDENTIAL_KEYS]
    credentials += [client.V1EnvVar(name=key, value_from=from_secret(key, optional=True)) for key in S3_OPTIONAL_CREDENTIAL_KEYS]
    settings = [client.V1EnvVar(name=key, value=value) for key, value in sorted(predictor.s3_settings.items())]
    ready = client.V1Probe(http_get=client.V1HTTPGetAction(path=f"/v1/models/{predictor.model_name}", port=KSERVE_HTTP_PORT))
    return client.V1Container(
        name=PREDICTOR_CONTAINER,
        image=predictor.image,
        command=["python3", "-m", "components.serve"],
        args=args,
        env=[*credentials, *settings, client.V1EnvVar(name="PYTHONUNBUFFERED", value="1")],
        ports=[client.V1ContainerPort(container_port=KSERVE_HTTP_PORT, protocol="TCP")],
        readiness_probe=ready,
        # A CPU limit of its own: KServe fills a missing one with its configured default, "1"
        # (predictor_custom.go, setResourceRequirementDefaults), below any request above 1.
        resources=client.V1ResourceRequirements(
            requests={"cpu": predictor.cpu, "memory": predictor.memory}, limits={"cpu": predictor.cpu, "memory": predictor.memory}
        ),
        volume_mounts=[client.V1VolumeMount(name="tmp", mount_path="/tmp")],  # noqa: S108 (an emptyDir: the root file system is read-only)
        # On the container, not the pod: Knative refuses pod-level runAsUser/runAsGroup/runAsNonRoot
        # while its kubernetes.podspec-securitycontext flag is Disabled, its default (fieldmask.go,
        # PodSecurityContextMask); the container's securityContext takes them.
        security_context=client.V1SecurityContext(
            run_as_user=IMAGE_USER_ID,
            run_as_group=IMAGE_USER_ID,
            run_as_non_root=True,
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
        ),  # fmt: skip
    )


def served_version(service: dict | None) -> int | None:
    """The registry version an existing InferenceService of this project serves, from its annotation."""
    return annotated_version(service, REGISTRY_VERSION_ANNOTATION)


def stable_version(service: dict | None) -> int | None:
    """On a service that runs a canary, the version that keeps the rest of the traffic; else None."""
    return annotated_version(service, STABLE_VERSION_ANNOTATION)


def annotated_version(service: dict | None, annotation: str) -> int | None:
    text = (((service or {}).get("metadata") or {}).get("annotations") or {}).get(annotation, "")
    return int(text) if text.isdigit() else None


def is_ready(service: dict) -> bool:
    """Ready, and the controller has seen the latest spec (a just-applied change is not ready yet)."""
    status = service.get("status") or {}
    generation = (service.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False
    return any(condition.get("type") == "Ready" and condition.get("status") == "True" for condition in status.get("conditions") or [])
