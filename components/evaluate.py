"""evaluate: score the trained model on the test split beside a baseline; say whether it passes the quality gate.

    python -m components.evaluate --model_uri runs/x/model --data_uri runs/x/tokens --output_uri runs/x/evaluation

What it scores and writes is the task's (read from the model's lineage): for a classifier, metrics
beside a majority-class baseline, predictions.parquet and report.html with its pictures
(components/lib/reporting/classifier_evaluation.py); for a causal language model, perplexity and bits
per character beside an n-gram baseline, generated samples and a report
(components/lib/reporting/lm_evaluation.py).
"""

from __future__ import annotations

import json

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import GATE_METRIC, GATE_MIN, MAX_PERPLEXITY, takes_common_flags
from components.lib.data.contract import METRICS_FILE, require_output_of
from components.lib.quality_gate import PASSED, PASSES_OUTPUT, check_gate_metric
from components.lib.stage_flags import StageUris
from components.lib.storage.artifacts import read_manifest, staged_input
from components.lib.tasks import task_for


@takes_common_flags
def evaluate(
    *,
    model_uri: str,
    data_uri: str,
    output_uri: str,
    report_path: str = "",
    batch_size: int = 64,
    gate_metric: str = GATE_METRIC.default,
    gate_min: float = GATE_MIN.default,
    max_perplexity: float = MAX_PERPLEXITY.default,
    executor_input: str = "",
) -> StageResult:
    """Score the model on the test split; write metrics, predictions and an HTML report; say whether it passes the quality gate.

    Args:
      model_uri: Folder (local or s3://) written by train.
      data_uri: Folder (local or s3://) written by tokenize; its test split is scored.
      output_uri: Folder (local or s3://) for metrics.json, predictions.parquet, report.html and the pictures.
      report_path: Also write the HTML report to this local file (Kubeflow's HTML artifact). Empty: only in output_uri.
      batch_size: Rows per inference batch.
    """
    check_gate_metric(gate_metric)
    require_output_of("train", model_uri, "--model_uri")
    require_output_of("tokenize", data_uri, "--data_uri")
    task = task_for(read_manifest(model_uri), model_uri)
    result = task.evaluate(StageUris(model_uri, data_uri, output_uri), report_path, batch_size)
    gate = task.gate
    threshold = {GATE_MIN.name: gate_min, MAX_PERPLEXITY.name: max_perplexity}[gate.flag]
    with staged_input(output_uri, only=[METRICS_FILE]) as (evaluation_dir, _):
        test_metrics = json.loads((evaluation_dir / METRICS_FILE).read_text())["test"]  # what register's gate reads
    value = test_metrics[gate.metric_to_read(gate_metric, test_metrics, "the evaluation")]
    passes = gate.passes(value, threshold)
    result.parameters[PASSES_OUTPUT] = passes
    # The gate's first check only; register runs the others (the baseline, production), so this is not the verdict.
    result.summary[gate.flag] = f"{PASSED}; register checks the rest of the gate" if passes else gate.shortfall(value, threshold)
    return result


if __name__ == "__main__":
    run_stage(evaluate)
