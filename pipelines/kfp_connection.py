"""A connection to a Kubeflow Pipelines API server for `make pipeline-submit`, `make pipeline-retry` and
`make cluster-check`: a `kfp.Client` whose requests give up within seconds, and whose failures (a
refused token, a login page, a host that does not answer) are one line that says what to set.

The bearer token comes from KFP_TOKEN, else from the service-account token file
(KF_PIPELINES_SA_TOKEN_PATH, /var/run/secrets/kubeflow/pipelines/token, or the pod's own); it is
sent, never printed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

from components.lib.errors import UserError

TOKEN_FILES = ("/var/run/secrets/kubeflow/pipelines/token", "/var/run/secrets/kubernetes.io/serviceaccount/token")
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
CONNECT_RETRIES = 1  # one more try of a refused or timed-out connection, then one line


@contextlib.contextmanager
def kfp_api(host: str, namespace: str):
    """A bounded client of the Kubeflow Pipelines API at `host`; what goes wrong talking to it is one line."""
    import kfp_server_api
    import urllib3

    try:
        with quiet_kfp():
            yield bounded_client(host, namespace)
    except kfp_server_api.ApiException as error:
        if error.status in (401, 403):
            raise UserError(f"{host} refused the credentials (HTTP {error.status}); set KFP_TOKEN or check the service account") from None
        raise UserError(f"{host} answered HTTP {error.status} {error.reason}: {first_line(error.body)}") from None
    except WebPageAnswer as page:
        raise UserError(
            f"{host} answered with a web page ({page.args[0]}: a login?), not the Kubeflow Pipelines API; set KFP_HOST to a"
            " port-forward of the Pipelines UI (kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80) and KFP_TOKEN to a"
            " service-account token (kubectl create token <account> -n <namespace> --audience pipelines.kubeflow.org)"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise UserError(
            f"cannot reach the Kubeflow Pipelines API at {host} ({describe_connection_error(error)});"
            " check KFP_HOST (else the config's submit.host) or the port-forward"
        ) from None


def find_token() -> str | None:
    if os.environ.get("KFP_TOKEN"):
        return os.environ["KFP_TOKEN"]
    for candidate in (os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"), *TOKEN_FILES):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text().strip()
    return None


@contextlib.contextmanager
def quiet_kfp():
    """kfp prints its own links and a FutureWarning, urllib3 one line per retry: ours say it once, last."""
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # kfp_server_api resets "urllib3" itself
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        yield


def bounded_client(host: str, namespace: str):
    """A kfp.Client whose requests give up within seconds: timeouts, one retry of a connection, one health check."""
    import kfp
    from urllib3.util import Retry

    harden_requests()

    class BoundedClient(kfp.Client):
        def _load_config(self, *args, **kwargs):
            config = super()._load_config(*args, **kwargs)
            config.retries = Retry(total=CONNECT_RETRIES, read=0, backoff_factor=0.5)
            return config

        def get_kfp_healthz(self, sleep_duration: int = 0):
            return self._healthz_api.healthz_service_get_healthz()  # kfp's own tries 5 times, 5 s apart

    return BoundedClient(host=host, existing_token=find_token(), namespace=namespace)


def describe_connection_error(error: Exception) -> str:
    """`NewConnectionError: [Errno 111] Connection refused`: the last try's error, without urllib3's object reprs."""
    reason = getattr(error, "reason", None) or error  # MaxRetryError holds the last try's
    text = next((arg for arg in reversed(reason.args) if isinstance(arg, str)), "")
    return f"{type(reason).__name__}: {text.split(': ')[-1]}" if text else type(reason).__name__


def first_line(body) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return (text.strip().splitlines() or [""])[0][:200]


class WebPageAnswer(Exception):
    """The host answered an API request with a web page, not JSON: `args[0]` is where that page is."""


def harden_requests() -> None:
    """Bound kfp_server_api's requests, which have no timeout, so a silent server hangs forever; and
    refuse a web page for an answer. A multi-user Kubeflow behind Dex or oauth2-proxy redirects a
    request without a session to its login page; kfp_server_api follows the redirect and reads the
    HTML as an empty answer, so the submit went on with no ids and ended in a traceback."""
    from kfp_server_api import rest

    original = rest.RESTClientObject.request
    if getattr(original, "hardened", False):
        return

    def request(self, *args, _request_timeout=None, **kwargs):
        response = original(self, *args, _request_timeout=_request_timeout or (CONNECT_TIMEOUT_S, READ_TIMEOUT_S), **kwargs)
        answer = getattr(response, "urllib3_response", response)  # kfp_server_api's wrapper, or urllib3's own
        if "html" in answer.headers.get("Content-Type", ""):
            raise WebPageAnswer(answer.url)
        return response

    vars(request)["hardened"] = True  # a function attribute: mypy's function type declares none
    rest.RESTClientObject.request = request
