"""Causal language models: an unlabelled corpus, cut into token blocks, a GPT-2 trained on next-token
prediction, scored in perplexity and bits per character beside an n-gram model and gated on perplexity.

Each method hands its stage's work to the module that does it; they are imported inside the methods so
that looking the task up loads no model library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.lib.common_flags import MAX_PERPLEXITY
from components.lib.data.contract import CAUSAL_LM, MODEL_WEIGHTS_FILE
from components.lib.quality_gate import Gate, Verdict
from components.lib.tasks.base import ExportFlags, GateInputs, StageUris, Task, TokenizeFlags, TrainingRequest, TrainingSetup

if TYPE_CHECKING:
    from components.lib.cli import StageResult
    from components.lib.training.settings import TrainConfig

HEADLINE = ("perplexity", "bits_per_character", "next_token_accuracy")  # a language model's figures in its version's manifest


class CausalLanguageModelTask(Task):
    name = CAUSAL_LM
    gate = Gate(
        metric="perplexity",
        label="perplexity",
        flag=MAX_PERPLEXITY.name,
        parameter=MAX_PERPLEXITY.name,
        higher_is_better=False,
        takes_gate_metric=False,
    )
    labelled = False

    def preprocess(self, flags: Any) -> StageResult:
        from components.lib.data.corpus import preprocess_corpus_flags

        return preprocess_corpus_flags(flags)

    def tokenize(self, flags: TokenizeFlags) -> StageResult:
        from components.lib.cli import StageResult
        from components.lib.data.lm_tokenize import CorpusFlags, refuse_folds, tokenize_corpus
        from components.lib.stage_outputs import TOKENIZED_ARTIFACT, TOKENIZED_URI_OUTPUT

        refuse_folds(flags.num_folds)
        corpus = CorpusFlags(
            flags.base_model, flags.tokenizer, flags.vocab_size, flags.block_size, flags.batch_size, flags.trust_remote_code
        )
        stats = tokenize_corpus(flags.data_uri, flags.output_uri, corpus)
        rows = {split: entry["blocks"] for split, entry in stats["splits"].items()}
        block_size, kind = stats["block_size"], stats["tokenizer"]["kind"]
        return StageResult(
            summary={"stage": "tokenize", "output_uri": flags.output_uri, "task": self.name, "block_size": block_size, "rows": rows},
            artifact_metadata={
                TOKENIZED_ARTIFACT: {
                    "task": self.name,
                    "block_size": block_size,
                    "base_model": stats["base_model"],
                    "tokenizer": kind,
                    "rows": rows,
                }
            },
            parameters={TOKENIZED_URI_OUTPUT: flags.output_uri},
            artifact_uri_parameters={TOKENIZED_URI_OUTPUT: TOKENIZED_ARTIFACT},
        )

    def training_settings(self, config: TrainConfig) -> TrainConfig:
        from components.lib.tasks.causal_lm_training import language_model_settings

        return language_model_settings(config)

    def needs_base_model(self, config: TrainConfig) -> bool:
        from components.lib.modelling.language_model import PRETRAINED

        return config.lm_size == PRETRAINED

    def training_setup(self, request: TrainingRequest) -> TrainingSetup:
        from components.lib.tasks.causal_lm_training import language_model_setup

        return language_model_setup(request)

    def model_lineage(self, config: TrainConfig, model: Any) -> dict:
        return {"model_type": model.model_type, "lm_size": config.lm_size}

    def evaluate(self, uris: StageUris, report_path: str, batch_size: int) -> StageResult:
        from components.lib.reporting.lm_evaluation import evaluate_language_model

        return evaluate_language_model(model_uri=uris.model_uri, data_uri=uris.data_uri, output_uri=uris.output_uri,
                                       report_path=report_path, batch_size=batch_size)  # fmt: skip

    def export(self, uris: StageUris, flags: ExportFlags) -> StageResult:
        from components.lib.modelling.lm_export import export_language_model

        return export_language_model(
            model_uri=uris.model_uri,
            data_uri=uris.data_uri,
            output_uri=uris.output_uri,
            opset=flags.opset,
            parity_rows=flags.parity_rows,
            parity_atol=flags.parity_atol,
            min_argmax_agreement=flags.min_argmax_agreement,
            latency_runs=flags.latency_runs,
            batch_size=flags.batch_size,
        )

    def verdict(self, inputs: GateInputs) -> Verdict:
        from components.lib.tasks.causal_lm_gate import language_model_verdict
        from components.lib.tasks.classification import ClassificationTask

        # register's --gate_min and --gate_metric are classification's: said to be ignored when set
        return language_model_verdict(self.name, self.gate, ClassificationTask.gate, inputs.registry, inputs.metrics, inputs.flags,
                                      inputs.data_dir, inputs.export_uri)  # fmt: skip

    def headline(self, test: dict) -> dict:
        return {key: round(test[key], 4) for key in HEADLINE if test.get(key) is not None}

    def model_card(self, name: str, version: int, export_dir: Path, export_manifest: dict, facts: dict, data_dir: Path) -> str:
        from components.lib.cards.language_model import build_language_model_card

        return build_language_model_card(name, version, **facts)

    def baseline(self, metrics: dict) -> tuple[dict, str]:
        baseline = metrics.get("baseline_ngram", {})
        return baseline, f"{baseline.get('order', 'n')}-gram model"

    def model_origin(self, lineage: dict) -> str:
        from components.lib.cards.language_model import language_model_origin

        return language_model_origin(lineage, lineage.get("training", {}))

    def serving_refusal(self, manifest: dict) -> str | None:
        if MODEL_WEIGHTS_FILE in manifest.get("files", {}):
            return None
        return (
            f"is a causal language model registered without {MODEL_WEIGHTS_FILE} (exported before generation was added);"
            " the model server generates with them: export and register it again"
        )

    def summary_lines(self, evaluation: dict, export_report: dict) -> list[str]:
        test, baseline = evaluation["test"], evaluation["baseline_ngram"]
        return [
            f"test perplexity {test['perplexity']:.2f}, bits per character {test['bits_per_character']:.4f},"
            f" next-token accuracy {test['next_token_accuracy']:.4f}"
            f"  (n-gram baseline: perplexity {baseline['perplexity']:.2f}, bits per character {baseline['bits_per_character']:.4f})",
        ]
