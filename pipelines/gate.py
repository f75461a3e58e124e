"""The pipeline's quality gate, declared once: register runs only if evaluate's test METRIC reaches the
pipeline parameter PARAMETER (register's own --gate_min, under the name the pipeline gives it).

The DAG's condition (pipelines/pipeline.py), the parameter's name (pipelines/parameters.py) and the local
run's summary (pipelines/local_run.py) all read it from here; register checks the same metric again,
told by the DAG (--gate_metric), with its baseline and production comparisons.
"""

from __future__ import annotations

import inspect

METRIC = "macro_f1"  # an output parameter of evaluate, and a key of its metrics.json "test"
LABEL = "macro-F1"  # the metric's name in what people read
PARAMETER = "min_macro_f1"
REGISTER_FLAG = "gate_min"


def minimum(parameters: dict, declared: list[inspect.Parameter]) -> float:
    """The minimum a run's gate compared with: the run's value, else the pipeline parameter's default."""
    if PARAMETER in parameters:
        return float(parameters[PARAMETER])
    return float(next(parameter.default for parameter in declared if parameter.name == PARAMETER))
