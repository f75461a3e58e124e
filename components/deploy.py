"""deploy: serve a registered version on KServe, as a canary beside the version already serving.

    python -m components.deploy --registry_uri s3://bucket/registry --model_name drug-review-sentiment \\
        --version 3 --image registry.example.com/textclf-cpu:1.0 --output_uri runs/x/deployment

Renders a KServe InferenceService for the version (pinned by number; an alias resolves first): the
CPU image as a custom predictor running `components.serve`, the S3 keys from the Secret
`--s3_secret_name`. When an InferenceService of that name already serves another version, the new
one gets `--canary_traffic_percent` of the traffic and the rest stays on the last revision rolled
out to 100% (KServe's canary rollout; deploying with 100 promotes it). Deploying the canary's
version again, as a retried task does, keeps the split. It is applied when a cluster is configured
(in a pod: its service account; elsewhere: a kubeconfig), with a server-side dry run under
`--dry_run`, then watched until Ready for at most `--ready_timeout_s`. Without a cluster it is
written to `--output_uri` and nothing is applied. The manifest is always written there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import yaml

from components.lib import storage
from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import takes_common_flags
from components.lib.data.contract import DEPLOYMENT_FILE, INFERENCE_SERVICE_FILE
from components.lib.errors import UserError
from components.lib.runtime import S3_SECRET_NAME, S3_SETTINGS
from components.lib.serving.inference_service import (
    Canary,
    Predictor,
    is_ready,
    render,
    runs_this_spec,
    served_version,
    service_name_for,
    stable_version,
)
from components.lib.serving.kubernetes_api import InferenceServices, connect
from components.lib.stage_outputs import URL_OUTPUT
from components.lib.storage.artifacts import read_manifest, staged_output
from components.lib.storage.registry import Registry
from components.lib.tasks import task_for

log = logging.getLogger("components.deploy")
POLL_SECONDS = 5.0
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")  # a Kubernetes object name (DNS subdomain)


@takes_common_flags
def deploy(
    *,
    registry_uri: str,
    model_name: str,
    version: str,
    image: str,
    output_uri: str,
    namespace: str = "",
    service_name: str = "",
    canary_traffic_percent: int = 10,
    s3_secret_name: str = S3_SECRET_NAME,
    min_replicas: int = 1,
    max_replicas: int = 3,
    cpu: str = "1",
    memory: str = "2Gi",
    image_pull_secrets: str = "",
    dry_run: bool = False,
    ready_timeout_s: int = 600,
    executor_input: str = "",
) -> StageResult:
    """Render a KServe InferenceService for a registered version and apply it when a cluster is configured.

    Args:
      image: The predictor's image: this project's CPU image.
      output_uri: Folder (local or s3://) for the rendered manifest and deployment.json.
      namespace: Kubernetes namespace; empty: the pod's own, or the kubeconfig context's.
      service_name: InferenceService name (a DNS label); empty: the model name made one.
      canary_traffic_percent: Share of traffic for the new version while another one serves; 100 switches at once.
      s3_secret_name: Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for reading the registry.
      min_replicas: Fewest predictor replicas (0 lets KServe scale to zero when idle).
      max_replicas: Most predictor replicas.
      cpu: CPU request and limit of a replica.
      memory: Memory request and limit of a replica.
      image_pull_secrets: Comma-separated Secrets of a private registry holding --image, in the namespace.
      dry_run: Let the API server validate the change (server-side dry run) without making it.
      ready_timeout_s: How long to wait for the service to become Ready after applying; 0 does not wait.
    """
    check_flags(canary_traffic_percent, min_replicas, max_replicas, ready_timeout_s)
    registry = Registry(registry_uri, model_name)
    number = registry.resolve(version)
    version_manifest = read_manifest(registry.version_uri(number))
    refusal = task_for(version_manifest, registry.version_uri(number)).serving_refusal(version_manifest)
    if refusal:
        raise UserError(f"{model_name} version {number} {refusal}")
    services = connect(namespace)
    predictor = Predictor(
        service_name=service_name_for(model_name, service_name), namespace=services.namespace if services else namespace or "default",
        image=image, registry_uri=registry_uri, model_name=model_name, version=number, s3_secret_name=s3_secret_name,
        s3_settings={key: os.environ[key] for key in S3_SETTINGS if os.environ.get(key)},
        min_replicas=min_replicas, max_replicas=max_replicas, cpu=cpu, memory=memory,
        image_pull_secrets=pull_secrets(image_pull_secrets),
    )  # fmt: skip
    if not storage.is_s3(registry_uri):
        where = "the predictor's pod cannot read it"
        if services is not None:
            raise UserError(f"--registry_uri {registry_uri}: a local folder; {where}: register to s3:// and deploy from there")
        log.warning("--registry_uri %s is a local folder; %s, so this manifest serves only where that path exists", registry_uri, where)
    existing = services.get(predictor.service_name) if services else None
    previous = version_before(existing, number)
    canary = canary_for(previous, number, canary_traffic_percent)
    manifest = render(predictor, canary)
    outcome = {"service_name": predictor.service_name, "namespace": predictor.namespace, "version": number,
               "previous_version": previous, "canary_traffic_percent": canary.percent if canary else None}  # fmt: skip
    if services is None:
        outcome["action"] = "rendered (no cluster configured: no in-cluster service account, no kubeconfig)"
    else:
        outcome.update(apply(services, manifest, existing, dry_run, ready_timeout_s))
    with staged_output(output_uri) as out:
        write_outputs(out, manifest, outcome)
    log.info("%s: %s", predictor.service_name, outcome["action"])
    return StageResult(summary={"stage": "deploy", **outcome}, parameters={URL_OUTPUT: outcome.get("url", "")})


def check_flags(canary_traffic_percent: int, min_replicas: int, max_replicas: int, ready_timeout_s: int) -> None:
    if not 0 < canary_traffic_percent <= 100:
        raise UserError(f"--canary_traffic_percent: {canary_traffic_percent} is not in 1..100")
    if min_replicas < 0 or max_replicas < max(min_replicas, 1):
        raise UserError(f"--min_replicas {min_replicas} / --max_replicas {max_replicas}: need 0 <= min <= max and max >= 1")
    if ready_timeout_s < 0:
        raise UserError("--ready_timeout_s must not be negative")


def pull_secrets(names: str) -> tuple[str, ...]:
    listed = tuple(name.strip() for name in names.split(",") if name.strip())
    for name in listed:
        if not SECRET_NAME.match(name):
            raise UserError(f"--image_pull_secrets: {name!r} is not a Secret name (lowercase letters, digits, '-' and '.')")
    return listed


def version_before(existing: dict | None, new: int) -> int | None:
    """The version that keeps the rest of the traffic under a canary of `new`. KServe keeps it on the
    last revision rolled out to 100% (ksvc_reconciler.go, createKnativeService: latestRolledoutRevision):
    while a canary runs that is its stable version, whether `new` is that canary again (a retried
    deploy), a newer one, or the stable one itself (a rollback, which then takes all traffic)."""
    stable = stable_version(existing)
    return stable if stable is not None else served_version(existing)


def canary_for(previous: int | None, new: int, percent: int) -> Canary | None:
    """A canary split only when another version serves; at 100 the new one takes all traffic at once."""
    return Canary(percent, previous) if previous is not None and previous != new and percent < 100 else None


def apply(services: InferenceServices, manifest: dict, existing: dict | None, dry_run: bool, ready_timeout_s: int) -> dict:
    name = manifest["metadata"]["name"]
    if runs_this_spec(existing, manifest):
        if dry_run or ready_timeout_s == 0 or is_ready(existing):
            return {"action": "unchanged (the service already runs this spec)", "url": (existing.get("status") or {}).get("url", "")}
        # An earlier attempt applied it and gave up waiting: wait again rather than report it done.
        ready = wait_until_ready(services, name, existing["metadata"].get("generation"), ready_timeout_s)
        return {"action": "unchanged (applied before); Ready", "url": (ready.get("status") or {}).get("url", "")}
    if existing is None:
        applied = services.create(manifest, dry_run)
        action = "created"
    else:
        manifest["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        applied = services.replace(manifest, dry_run)
        action = "updated"
    if dry_run:
        return {"action": f"{action} (server-side dry run: validated, not stored)"}
    if ready_timeout_s == 0:
        return {"action": f"{action}; not waiting for Ready"}
    ready = wait_until_ready(services, name, applied["metadata"].get("generation"), ready_timeout_s)
    return {"action": f"{action}; Ready", "url": (ready.get("status") or {}).get("url", "")}


def wait_until_ready(services: InferenceServices, name: str, generation: int | None, timeout_s: int) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        current = services.get(name) or {}
        current.setdefault("metadata", {}).setdefault("generation", generation)
        if is_ready(current):
            return current
        if time.monotonic() >= deadline:
            reasons = conditions_text(current)
            raise UserError(
                f"InferenceService {name} was not Ready after {timeout_s} s ({reasons or 'no status yet'}); kubectl describe isvc {name}"
            )
        time.sleep(POLL_SECONDS)


def conditions_text(service: dict) -> str:
    conditions = (service.get("status") or {}).get("conditions") or []
    return "; ".join(
        f"{item.get('type')}={item.get('status')} {item.get('message') or item.get('reason') or ''}".strip() for item in conditions
    )


def write_outputs(out: Path, manifest: dict, outcome: dict) -> None:
    (out / INFERENCE_SERVICE_FILE).write_text(yaml.safe_dump(manifest, sort_keys=False))
    (out / DEPLOYMENT_FILE).write_text(json.dumps(outcome, indent=2) + "\n")


if __name__ == "__main__":
    run_stage(deploy)
