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

from components.lib.errors import UserError
from components.lib.runtime import IMAGE_USER_ID, S3_CREDENTIAL_KEYS
from components.lib.serving.sdk import KSERVE_HTTP_PORT, import_kserve

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
KIND = "InferenceService"
REGISTRY_VERSION_ANNOTATION = "textclf.io/registry-version"
SPEC_ANNOTATION = "textclf.io/spec-sha256"
MODEL_NAME_LABEL = "textclf.io/model-name"
PREDICTOR_CONTAINER = "kserve-container"  # the name KServe gives a custom predictor's container
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


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


def service_name_for(model_name: str, given: str = "") -> str:
    """`given`, or the model name as a DNS label (KServe names Kubernetes objects after the service)."""
    name = given or re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise UserError(f"--service_name: {name!r} is not a DNS label (lowercase letters, digits and '-', at most 63); pass one")
    return name


def render(predictor: Predictor, canary_traffic_percent: int | None = None) -> dict:
    """The InferenceService as the JSON the Kubernetes API takes."""
    kserve = import_kserve()
    from kubernetes import client

    spec = kserve.V1beta1PredictorSpec(
        containers=[serving_container(predictor, client)],
        volumes=[client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())],
        min_replicas=predictor.min_replicas,
        max_replicas=predictor.max_replicas,
        canary_traffic_percent=canary_traffic_percent,
        security_context=client.V1PodSecurityContext(run_as_user=IMAGE_USER_ID, run_as_group=IMAGE_USER_ID, run_as_non_root=True),
    )
    service = kserve.V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind=KIND,
        metadata=client.V1ObjectMeta(
            name=predictor.service_name,
            namespace=predictor.namespace,
            labels={MODEL_NAME_LABEL: predictor.model_name, "app.kubernetes.io/part-of": "textclf"},
            annotations={REGISTRY_VERSION_ANNOTATION: str(predictor.version), "serving.kserve.io/enable-prometheus-scraping": "true"},
        ),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=spec),
    )
    manifest = client.ApiClient().sanitize_for_serialization(service)
    manifest["metadata"]["annotations"][SPEC_ANNOTATION] = spec_digest(manifest)
    return manifest


def spec_digest(manifest: dict) -> str:
    """The rendered spec's sha256: the API server adds defaults to a stored spec, so it is compared by this."""
    return hashlib.sha256(json.dumps(manifest["spec"], sort_keys=True).encode()).hexdigest()


def runs_this_spec(existing: dict | None, manifest: dict) -> bool:
    annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(SPEC_ANNOTATION) == manifest["metadata"]["annotations"][SPEC_ANNOTATION]


def serving_container(predictor: Predictor, client):
    args = ["--registry_uri", predictor.registry_uri, "--model_name", predictor.model_name,
            "--version", str(predictor.version), "--port", str(KSERVE_HTTP_PORT)]  # fmt: skip

    def from_secret(key: str):
        return client.V1EnvVarSource(secret_key_ref=client.V1SecretKeySelector(name=predictor.s3_secret_name, key=key))

    credentials = [client.V1EnvVar(name=key, value_from=from_secret(key)) for key in S3_CREDENTIAL_KEYS]
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
        resources=client.V1ResourceRequirements(
            requests={"cpu": predictor.cpu, "memory": predictor.memory}, limits={"memory": predictor.memory}
        ),
        volume_mounts=[client.V1VolumeMount(name="tmp", mount_path="/tmp")],  # noqa: S108 (an emptyDir: the root file system is read-only)
        security_context=client.V1SecurityContext(
            read_only_root_filesystem=True, allow_privilege_escalation=False, capabilities=client.V1Capabilities(drop=["ALL"])
        ),
    )


def served_version(service: dict | None) -> int | None:
    """The registry version an existing InferenceService of this project serves, from its annotation."""
    if service is None:
        return None
    text = ((service.get("metadata") or {}).get("annotations") or {}).get(REGISTRY_VERSION_ANNOTATION, "")
    return int(text) if text.isdigit() else None


def is_ready(service: dict) -> bool:
    """Ready, and the controller has seen the latest spec (a just-applied change is not ready yet)."""
    status = service.get("status") or {}
    generation = (service.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False
    return any(condition.get("type") == "Ready" and condition.get("status") == "True" for condition in status.get("conditions") or [])
