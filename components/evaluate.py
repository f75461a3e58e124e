"""evaluate: score the trained model on the test split beside a baseline; say whether it passes the quality gate.

    python -m components.evaluate --model_uri runs/x/model --data_uri runs/x/tokens --output_uri runs/x/evaluation

What it scores and writes is the task's (read from the model's lineage): for a classifier, metrics
beside a majority-class baseline, predictions.parquet and report.html with its pictures
(components/lib/reporting/classifier_evaluation.py); for a causal language model, perplexity and bits
per character beside an n-gram baseline, generated samples and a report
(components/lib/reporting/lm_evaluation.py).
"""

from __future__ import annotations

from components.lib.cli import StageResult, run_stage
from components.lib.data.contract import require_output_of
from components.lib.quality_gate import PASSED, PASSES_OUTPUT
from components.lib.stage_flags import StageUris
from components.lib.storage.artifacts import read_manifest
from components.lib.tasks import task_for


def evaluate(
    *,
    model_uri: str,
    data_uri: str,
    output_uri: str,
    report_path: str = "",
    batch_size: int = 64,
    gate_min: float = 0.0,
    max_perplexity: float = 0.0,
    executor_input: str = "",
) -> StageResult:
    """Score the model on the test split; write metrics, predictions and an HTML report; say whether it passes the quality gate.

    Args:
      model_uri: Folder (local or s3://) written by train.
      data_uri: Folder (local or s3://) written by tokenize; its test split is scored.
      output_uri: Folder (local or s3://) for metrics.json, predictions.parquet, report.html and the pictures.
      report_path: Also write the HTML report to this local file (Kubeflow's HTML artifact). Empty: only in output_uri.
      batch_size: Rows per inference batch.
      gate_min: Refuse to register below this test macro-F1 (the pipeline's quality gate for classification).
      max_perplexity: causal_lm: refuse to register above this test perplexity; 0: no limit.
      executor_input: Set by Kubeflow; leave empty when running by hand.
    """
    require_output_of("train", model_uri, "--model_uri")
    require_output_of("tokenize", data_uri, "--data_uri")
    task = task_for(read_manifest(model_uri), model_uri)
    result = task.evaluate(StageUris(model_uri, data_uri, output_uri), report_path, batch_size)
    gate = task.gate
    threshold = {"gate_min": gate_min, "max_perplexity": max_perplexity}[gate.flag]
    value = result.parameters[gate.metric]
    passes = gate.passes(value, threshold)
    result.parameters[PASSES_OUTPUT] = passes
    # The gate's first check only; register runs the others (the baseline, production), so this is not the verdict.
    result.summary[gate.flag] = f"{PASSED}; register checks the rest of the gate" if passes else gate.shortfall(value, threshold)
    return result


if __name__ == "__main__":
    run_stage(evaluate)
