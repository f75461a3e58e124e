"""Progress posted to a Kubeflow Trainer TrainJob's status, where the cluster asks for it.

With the TrainJobStatus feature gate on (Kubeflow Trainer v2.2+), the trainjobstatus plugin gives every
node container three variables (pkg/runtime/framework/plugins/trainjobstatus/trainjobstatus.go,
createEnvVars): the status server's URL, the path of its CA certificate, and the path of a projected
service-account token, which rotates and so is read again for every post. The server
(pkg/statusserver/server.go, handleTrainJobRuntimeStatus) takes a POST of an UpdateTrainJobStatusRequest
and applies it to `status.trainerStatus`: a progress percentage (0-100), the estimated seconds left, and
metrics as name/value strings of 1-64 characters each, at most 256 (pkg/apis/trainer/v1alpha1,
TrainerStatus and Metric). train_job's step logs that status as the job runs.

Only the job's rank 0 posts, from a background thread, at most once every POST_INTERVAL_SECONDS (the
Kubeflow SDK's own throttle), so a slow server never holds up a step; the last status (100%) is posted
when training ends. A post that fails is said once and counted, and training goes on.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("components.train")

SERVER_URL_VARIABLE = "KUBEFLOW_TRAINER_SERVER_URL"
CA_CERT_VARIABLE = "KUBEFLOW_TRAINER_SERVER_CA_CERT"
TOKEN_VARIABLE = "KUBEFLOW_TRAINER_SERVER_TOKEN"  # noqa: S105 (a variable's name, not a token)
POST_INTERVAL_SECONDS = 5.0
POST_TIMEOUT_SECONDS = 5.0
METRIC_TEXT_LIMIT = 64  # characters of a metric's name and of its value
METRIC_LIMIT = 256


@dataclass(frozen=True)
class StatusServer:
    url: str
    ca_cert: str
    token_file: str

    @classmethod
    def from_environment(cls) -> StatusServer | None:
        found = [os.environ.get(name, "") for name in (SERVER_URL_VARIABLE, CA_CERT_VARIABLE, TOKEN_VARIABLE)]
        if not all(found):
            return None
        if not found[0].startswith("https://"):
            log.warning("%s=%s is not https: the TrainJob's status is not posted to it", SERVER_URL_VARIABLE, found[0])
            return None
        return cls(*found)

    def post(self, body: dict) -> None:
        token = Path(self.token_file).read_text(encoding="utf-8").strip()  # read again each time: the token rotates
        request = urllib.request.Request(  # noqa: S310 (https only: from_environment)
            self.url, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        context = ssl.create_default_context(cafile=self.ca_cert)
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310 (https only)
            answer.read()


def status_body(step: int, steps: tuple[int, int], seconds: float, metrics: dict[str, float], finished: bool) -> dict:
    """An UpdateTrainJobStatusRequest: progress, the time left at this run's pace so far, the latest metrics.
    `steps`: the step this run started from (more than 0 when resumed) and the last step."""
    first_step, total_steps = steps
    ran = step - first_step
    progress = 100 if finished else min(99, int(100 * step / max(total_steps, 1)))
    remaining = 0 if finished else int(seconds / ran * (total_steps - step)) if ran > 0 else None
    status: dict = {"progressPercentage": progress, "lastUpdatedTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if remaining is not None:
        status["estimatedRemainingSeconds"] = max(0, remaining)
    named = [{"name": name[:METRIC_TEXT_LIMIT], "value": f"{value:.6g}"[:METRIC_TEXT_LIMIT]} for name, value in sorted(metrics.items())]
    if named:
        status["metrics"] = named[:METRIC_LIMIT]
    return {"trainerStatus": status}


class TrainJobStatus:
    """The latest progress, posted by a background thread; `close` posts the final one and stops it."""

    def __init__(self, server: StatusServer) -> None:
        self.server = server
        self.total_steps = 0
        self.first_step = 0  # a resumed run's pace counts only the steps it ran itself
        self.started = time.monotonic()
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.posted_step = -1
        self.posts = 0
        self.failures = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.post_periodically, name="trainjob-status", daemon=True)
        self.thread.start()

    def plan(self, total_steps: int, first_step: int) -> None:
        with self.lock:
            self.total_steps, self.first_step, self.step = total_steps, first_step, first_step
            self.started = time.monotonic()

    def update(self, step: int, values: dict[str, float]) -> None:
        with self.lock:
            self.step = max(self.step, step)
            self.metrics.update(values)

    def post_periodically(self) -> None:
        while not self.stopping.wait(POST_INTERVAL_SECONDS):
            with self.lock:
                if self.step == self.posted_step:
                    continue
                self.posted_step = self.step
                body = self.body(finished=False)
            self.send(body)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        with self.lock:
            body = self.body(finished=True)
        self.send(body)
        if self.failures:
            log.warning("TrainJob status: %d of %d posts to %s failed", self.failures, self.posts, self.server.url)

    def body(self, finished: bool) -> dict:
        seconds = time.monotonic() - self.started
        return status_body(self.step, (self.first_step, self.total_steps), seconds, dict(self.metrics), finished)

    def send(self, body: dict) -> None:
        self.posts += 1
        try:
            self.server.post(body)
        except (OSError, ValueError, http.client.HTTPException) as error:  # a broken answer too: never a traceback from the thread
            self.failures += 1
            if self.failures == 1:
                log.warning("TrainJob status: posting to %s failed (%s); training goes on, later failures are counted",
                            self.server.url, reason(error))  # fmt: skip


def reason(error: Exception) -> str:
    """The server's own message (a metav1.Status) where it sent one, else the error in one line."""
    if isinstance(error, urllib.error.HTTPError):
        try:
            return f"HTTP {error.code}: {json.loads(error.read()).get('message', '')}"
        except (ValueError, OSError):
            return f"HTTP {error.code}"
    return " ".join(str(error).split())
