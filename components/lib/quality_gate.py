"""The pipeline's quality gate: each task declares its `Gate` once (components/lib/tasks/): the test metric
it reads, the flag of evaluate and register that holds its threshold, the pipeline parameter that flag
is, and which way is better.

evaluate compares its test score with the threshold and says whether it passes (its output
PASSES_OUTPUT); the DAG runs register only then (pipelines/pipeline.py). register checks the same
threshold again, with its baseline and production comparisons. pipelines/gate.py and the local run's
summary read these declarations; nothing restates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from components.lib.errors import UserError
from components.lib.reporting.metrics import HIGHER_IS_BETTER

# evaluate's output parameter that the DAG's condition reads. The verdict, not a score: every output
# parameter a component declares must be written by every run, or the launcher fails the task
# (backend/src/v2/component/launcher_v2.go, collectOutputParameters: "failed to read output
# parameter"), and a language model has no macro-F1 to write.
PASSES_OUTPUT = "passes_gate"


@dataclass(frozen=True)
class Gate:
    metric: str  # a key of evaluate's metrics.json "test"
    label: str  # the metric's name in what people read
    flag: str  # evaluate's and register's flag that holds the threshold
    parameter: str  # that flag's pipeline parameter
    higher_is_better: bool
    takes_gate_metric: bool = True  # whether --gate_metric may name another test metric for the threshold to hold to

    def metric_to_read(self, gate_metric: str, test_metrics: dict, where: str) -> str:
        """The test metric the threshold holds to: --gate_metric where this gate takes one, else its own."""
        if not (gate_metric and self.takes_gate_metric):
            return self.metric
        if gate_metric not in test_metrics:
            known = ", ".join(name for name in test_metrics if HIGHER_IS_BETTER.get(name))
            raise UserError(f"--gate_metric {gate_metric}: {where} has no such test metric; it has {known}")
        return gate_metric

    def passes(self, value: float, threshold: float) -> bool:
        """A lower-is-better threshold of 0 means no limit (a perplexity is never 0)."""
        if self.higher_is_better:
            return value >= threshold
        return threshold <= 0 or value <= threshold

    def shortfall(self, value: float, threshold: float) -> str:
        """Why `value` does not pass, in the words people read."""
        return f"test {self.label} {value:.4f} is {'below' if self.higher_is_better else 'above'} {self.parameter} {threshold}"


def check_gate_metric(gate_metric: str) -> None:
    """--gate_metric, if given, names a metric where higher is better (--gate_min is a minimum)."""
    if gate_metric and not HIGHER_IS_BETTER.get(gate_metric, False):
        choices = ", ".join(name for name, up in HIGHER_IS_BETTER.items() if up)
        raise UserError(f"--gate_metric: {gate_metric!r} is not one of {choices}")


@dataclass(frozen=True)
class GateFlags:
    """register's flags of the gate; each task reads those that are its own."""

    gate_metric: str  # empty: the task's own gate metric
    gate_min: float
    compare_with_production: bool
    max_regression: float
    require_beat_baseline: bool
    max_perplexity: float
    significance: float  # the paired bootstrap's level against production; 0: compare the scores alone
    min_slice_rows: int  # slices of the test split this large are compared with production too
    max_slice_regression: float  # how far below production on such a slice the candidate may be


@dataclass(frozen=True)
class Verdict:
    metric: str  # the test metric the gate read
    candidate: float  # its value
    checks: list[dict]  # each check of the gate, in order, with its result (gate_checks)
    warning: str | None = None
    comparison: dict | None = None  # the comparison with production, when one ran: both scores, the test and its p-value

    @property
    def refusal(self) -> str | None:
        """Why the model is not registered: the first check that refused it; None: it is registered."""
        return next((check["why"] for check in self.checks if check["result"] == REFUSED), None)


# The result of each check of the gate, as registration.json and the local run's summary give it.
PASSED, REFUSED, OFF, NOT_CHECKED = "passed", "refused", "off", "not checked"


def gate_checks(steps: list[tuple[str, bool, Callable[[], str | None]]]) -> list[dict]:
    """Run the gate's checks in order, each (its flag, whether it is on, the check: None or why it
    refuses); once one refuses, the later ones are not run (production is not scored in vain)."""
    results: list[dict] = []
    for flag, enabled, check in steps:
        if not enabled:
            results.append({"check": flag, "result": OFF})
        elif any(result["result"] == REFUSED for result in results):
            results.append({"check": flag, "result": NOT_CHECKED})
        else:
            why = check()
            results.append({"check": flag, "result": PASSED} if why is None else {"check": flag, "result": REFUSED, "why": why})
    return results
