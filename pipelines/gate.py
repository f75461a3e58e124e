"""The pipeline's side of the quality gate (each task declares its Gate in components/lib/tasks/):
the threshold a run compared with, for the local run's summary. The DAG's condition reads evaluate's
PASSES_OUTPUT (pipelines/pipeline.py); the parameters' names come from the same declarations
(pipelines/parameters.py)."""

from __future__ import annotations

import inspect

from components.lib.quality_gate import Gate


def threshold(gate: Gate, parameters: dict, declared: list[inspect.Parameter]) -> float:
    """The threshold a run's gate compared with: the run's value, else the pipeline parameter's default."""
    if gate.parameter in parameters:
        return float(parameters[gate.parameter])
    return float(next(parameter.default for parameter in declared if parameter.name == gate.parameter))
