"""InferenceServices through the Kubernetes API, with the cluster's refusals as one-line user errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from components.lib.errors import UserError
from components.lib.serving.inference_service import GROUP, PLURAL, VERSION

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class InferenceServices:
    """get / create / replace of serving.kserve.io/v1beta1 InferenceServices in one namespace."""

    def __init__(self, api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def get(self, name: str) -> dict | None:
        return self.call("read", name, lambda: self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name),
                         missing_is_none=True)  # fmt: skip

    def create(self, manifest: dict, dry_run: bool) -> dict:
        options = {"dry_run": "All"} if dry_run else {}
        return self.call("create", manifest["metadata"]["name"], lambda: self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest, **options))  # fmt: skip

    def replace(self, manifest: dict, dry_run: bool) -> dict:
        name, options = manifest["metadata"]["name"], {"dry_run": "All"} if dry_run else {}
        return self.call("replace", name, lambda: self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, manifest, **options))  # fmt: skip

    def call(self, verb: str, name: str, request, missing_is_none: bool = False):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return request()
        except ApiException as error:
            if missing_is_none and error.status == 404:
                return None
            raise self.refusal(verb, name, error) from None
        except HTTPError as error:
            host = self.api.api_client.configuration.host
            raise UserError(
                f"InferenceService {self.namespace}/{name}: cannot reach the Kubernetes API at {host} ({type(error).__name__})"
            ) from None

    def refusal(self, verb: str, name: str, error) -> UserError:
        where = f"InferenceService {self.namespace}/{name}"
        if error.status == 403:
            return UserError(f"{where}: the service account may not {verb} InferenceServices here; apply manifests/base (role.yaml)")
        if error.status == 404:
            return UserError(f"{where}: the cluster has no {GROUP}/{VERSION} {PLURAL}: is KServe installed?")
        if error.status == 409:
            return UserError(f"{where}: changed by someone else while deploying; run deploy again")
        return UserError(f"{where}: the API server refused to {verb} it ({error.status}): {api_message(error)}")


def api_message(error) -> str:
    try:
        return json.loads(error.body).get("message", "") or str(error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


def connect(namespace: str = "") -> InferenceServices | None:
    """The cluster this runs in (its service account) or the kubeconfig's; None when neither is configured."""
    from kubernetes import client

    found = load_cluster(namespace)
    return InferenceServices(client.CustomObjectsApi(), found) if found else None


def load_cluster(namespace: str = "") -> str | None:
    """Configure the Kubernetes client for the cluster this runs in (its service account) or the kubeconfig's,
    and return the namespace to use (given, else the pod's or the context's); None when neither is configured."""
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and SERVICE_ACCOUNT_NAMESPACE.is_file():
        config.load_incluster_config()
        return namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    listed = [Path(entry).expanduser() for entry in os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep) if entry]
    kubeconfig = next((path for path in listed if path.is_file()), None)
    if kubeconfig is None:
        return None
    try:
        config.load_kube_config(config_file=str(kubeconfig))
        _, context = config.list_kube_config_contexts(config_file=str(kubeconfig))
    except config.ConfigException as error:
        raise UserError(f"{kubeconfig}: not a usable kubeconfig ({error})") from None
    return namespace or context.get("context", {}).get("namespace") or "default"
