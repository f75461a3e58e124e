"""evaluate for causal language models: test scores beside an n-gram baseline, samples and a report.

Scores are per predicted token (a block of n tokens predicts its tokens 1..n-1): the loss in nats,
perplexity = exp(loss) and next-token accuracy. Those depend on the tokenizer; bits per character
do not: bits_per_character = loss / ln 2 x tokens / characters, the test split's counts from
tokenize's stats.json. `tokens` there includes the end-of-text after each document while
`characters` has none for it: the model predicts those end-of-text tokens too and their loss is in
the mean, so they count among the tokens that cost the bits spent on the split's characters.

The baseline is an interpolated trigram (components/lib/modelling/ngram.py) trained on the train
split with the same tokenizer, its weights fitted on validation, scored on exactly the test
positions the model predicts.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import time
from pathlib import Path

from components.lib.cli import StageResult
from components.lib.data.batching import TokenizedSplit
from components.lib.data.contract import (
    CAUSAL_LM,
    HISTORY_FILE,
    LR_RANGE_TEST_PICTURE,
    METRICS_FILE,
    STATS_FILE,
    TOKENIZER_DIR,
    TRAINING_CURVES_PICTURE,
    require_task,
)
from components.lib.errors import UserError
from components.lib.modelling.language_model import PRETRAINED, BlockScores, CausalLanguageModel, score_blocks
from components.lib.modelling.ngram import ORDER, TrigramModel, baseline_scores, split_positions, split_stream
from components.lib.modelling.precision import scoring_setup
from components.lib.modelling.sources import load_tokenizer, pad_id
from components.lib.reporting.plots import language_model_curves_png
from components.lib.reporting.report import embedded_png, key_value_table, page_start, table
from components.lib.reporting.tracking import publish_report
from components.lib.stage_outputs import EVALUATION_ARTIFACT, EVALUATION_URI_OUTPUT, METRICS_ARTIFACT
from components.lib.storage.artifacts import made_from, staged_input, staged_output

SAMPLES = 3  # generations shown, one from the start of each of the first test blocks
PROMPT_TOKENS = 8
NEW_TOKENS = 40
CURVES_CAPTION = (
    "Training: the loss (training loss is the mean over each logged interval) and the validation loss, validation"
    " perplexity on a log scale, and the learning rate, by optimizer step."
)
WEIGHTS_CHOSEN = "expectation-maximisation on the validation split"


def evaluate_language_model(*, model_uri: str, data_uri: str, output_uri: str, report_path: str = "", batch_size: int = 64) -> StageResult:
    """Score a causal LM on the test split beside a trigram baseline; write metrics.json and report.html."""
    with staged_input(model_uri) as (model_dir, model_manifest), staged_input(data_uri) as (data_dir, data_manifest):
        require_task(data_manifest, CAUSAL_LM, data_uri)
        tokenizer = load_tokenizer(model_uri, str(model_dir))
        vocab_size = check_same_tokenizer(model_uri, tokenizer, data_uri, load_tokenizer(data_uri, str(data_dir / TOKENIZER_DIR)))
        tokens_per_character = tokens_per_character_of_test(data_dir, data_uri)
        device, precision = scoring_setup(model_dir)
        model = CausalLanguageModel.load(model_dir, model_uri).to(device).eval()
        test = TokenizedSplit.load_blocks(data_dir, "test")
        scores = score_blocks(model, test, batch_size, device, pad_id(tokenizer), precision.autocast(device))
        metrics = model_scores(scores, tokens_per_character)
        baseline = ngram_baseline(data_dir, vocab_size, test, tokens_per_character)
        samples = generate_samples(model, test, tokenizer)
        with staged_output(output_uri, extra=made_from(model_manifest)) as out:
            result = {"test": metrics, "baseline_ngram": baseline, "samples": samples, "model_uri": model_uri, "data_uri": data_uri,
                      "scored_in": precision.record()}  # fmt: skip
            (out / METRICS_FILE).write_text(json.dumps(result, indent=2) + "\n")
            write_report(out, result, model_dir, model_manifest, report_path)
    return stage_result(output_uri, metrics, baseline)


def model_scores(scores: BlockScores, tokens_per_character: float | None) -> dict:
    return {
        "loss": scores.loss,
        "perplexity": scores.perplexity,
        "bits_per_character": bits_per_character(scores.loss, tokens_per_character),
        "next_token_accuracy": scores.accuracy,
        "tokens": scores.tokens,
    }


def write_report(out: Path, result: dict, model_dir: Path, model_manifest: dict, report_path: str) -> None:
    """report.html with the training curves (also at report_path if given); both logged to the model's MLflow run, if any."""
    history = json.loads((model_dir / HISTORY_FILE).read_text()) if (model_dir / HISTORY_FILE).is_file() else {}
    pictures = [out / TRAINING_CURVES_PICTURE] if language_model_curves_png(history, out / TRAINING_CURVES_PICTURE) else []
    if (model_dir / LR_RANGE_TEST_PICTURE).is_file():  # train ran the learning-rate range test
        pictures.append(Path(shutil.copyfile(model_dir / LR_RANGE_TEST_PICTURE, out / LR_RANGE_TEST_PICTURE)))
    context = {"data": result["data_uri"], **model_manifest.get("lineage", {})}
    report = report_html(heading(result["model_uri"], model_manifest), result, pictures, context)
    publish_report(report, out, report_path, model_dir, result["test"], [out / METRICS_FILE, *pictures])


def check_same_tokenizer(model_uri: str, model_tokenizer, data_uri: str, data_tokenizer) -> int:
    """The shared vocabulary's size; one line if the model was trained with another tokenizer than the data's."""
    if model_tokenizer.get_vocab() != data_tokenizer.get_vocab():
        raise UserError(
            f"{model_uri}: the model's tokenizer ({len(model_tokenizer)} entries) is not the one of {data_uri}"
            f" ({len(data_tokenizer)} entries); evaluate it on data from the tokenize run it was trained on"
        )
    return len(data_tokenizer)


def tokens_per_character_of_test(data_dir: Path, data_uri: str) -> float | None:
    """The test split's tokens (end-of-text included) per character, from tokenize's stats; None without characters."""
    stats_file = data_dir / STATS_FILE
    if not stats_file.is_file():
        raise UserError(f"{data_uri}: has no {STATS_FILE}; pass the folder tokenize wrote for causal_lm data")
    test = json.loads(stats_file.read_text())["splits"]["test"]
    return test["tokens"] / test["characters"] if test["characters"] else None


def bits_per_character(loss: float, tokens_per_character: float | None) -> float | None:
    if tokens_per_character is None or math.isnan(loss):
        return None
    return loss / math.log(2) * tokens_per_character


def ngram_baseline(data_dir: Path, vocab_size: int, test: TokenizedSplit, tokens_per_character: float | None) -> dict:
    """The interpolated trigram's test scores (trained on train, weights fitted on validation) and its weights."""
    train = TokenizedSplit.load_blocks(data_dir, "train")
    trigram = TrigramModel.train(split_stream(train), vocab_size)
    trigram = trigram.fit_weights(split_positions(TokenizedSplit.load_blocks(data_dir, "validation")))
    scores = baseline_scores(trigram, split_positions(test))
    return {
        "order": ORDER,
        "loss": scores["loss"],
        "perplexity": scores["perplexity"],
        "bits_per_character": bits_per_character(scores["loss"], tokens_per_character),
        "tokens": scores["tokens"],
        "weights": trigram.named_weights(),
        "weights_chosen_by": WEIGHTS_CHOSEN,
        "train_tokens": int(train.lengths.sum()),
    }


def generate_samples(model: CausalLanguageModel, test: TokenizedSplit, tokenizer) -> list[dict]:
    """Seeded top-k continuations of the first PROMPT_TOKENS tokens of the first SAMPLES test blocks."""
    samples = []
    for row in range(min(SAMPLES, len(test))):
        start = test.offsets[row]
        prompt = test.token_ids[start : start + min(PROMPT_TOKENS, test.lengths[row])].tolist()
        generated = model.generate(prompt, NEW_TOKENS, seed=row)
        samples.append({"seed": row, "prompt": tokenizer.decode(prompt), "continuation": tokenizer.decode(generated[len(prompt) :])})
    return samples


def heading(model_uri: str, model_manifest: dict) -> dict:
    """The facts under the report's title."""
    lineage = model_manifest.get("lineage", {})
    from_scratch = lineage.get("lm_size") not in (None, PRETRAINED)
    return {
        "base model": f"none: a GPT-2 '{lineage['lm_size']}' trained from scratch" if from_scratch else lineage.get("base_model", "?"),
        "tokenizer": f"{lineage.get('tokenizer', '?')}, {lineage.get('vocab_size', '?')} entries",
        "model": model_uri,
        "trained": model_manifest.get("committed_at", "?").replace("T", " ").replace("Z", " UTC"),
        "evaluated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def report_html(heading: dict, result: dict, pictures: list[Path], context: dict) -> str:
    metrics, baseline, samples = result["test"], result["baseline_ngram"], result["samples"]
    title = "Language model evaluation on the test split"
    names = ("loss", "perplexity", "bits_per_character", "next_token_accuracy", "tokens")
    scores = table(["metric", "model", "interpolated trigram baseline"], [[name, metrics[name], baseline.get(name)] for name in names])
    weights = key_value_table({**baseline["weights"], "chosen by": baseline["weights_chosen_by"], "train tokens": baseline["train_tokens"]})
    shown = table(["seed", "prompt", "continuation"], [[sample["seed"], sample["prompt"], sample["continuation"]] for sample in samples])
    return (
        page_start(title, heading)
        + f"""<h2>Test scores</h2>{scores}
<p>Loss in nats per predicted token; perplexity = exp(loss); bits per character do not depend on the tokenizer.</p>
<h2>Baseline interpolation weights</h2>{weights}
<h2>Training</h2>{"".join(curves_figure(path) for path in pictures) or "<p>No training history was kept with the model.</p>"}
<h2>Samples</h2>{shown}
<h2>Run</h2>{key_value_table(context)}
</body></html>
"""
    )


def curves_figure(path: Path) -> str:
    """report.py's embedded picture with a language model's caption (its own caption describes a classifier's curves)."""
    picture = embedded_png(path)
    return picture[: picture.index("<figcaption>")] + f"<figcaption>{html.escape(CURVES_CAPTION)}</figcaption></figure>"


def stage_result(output_uri: str, metrics: dict, baseline: dict) -> StageResult:
    return StageResult(
        summary={
            "stage": "evaluate",
            "output_uri": output_uri,
            "test": {"perplexity": round(metrics["perplexity"], 4), "bits_per_character": rounded(metrics["bits_per_character"])},
            "baseline": {"perplexity": round(baseline["perplexity"], 4)},
        },
        artifact_metadata={
            METRICS_ARTIFACT: {
                "perplexity": round(metrics["perplexity"], 4),
                "loss": round(metrics["loss"], 6),
                "bits_per_character": rounded(metrics["bits_per_character"]),
                "next_token_accuracy": round(metrics["next_token_accuracy"], 4),
                "baseline_perplexity": round(baseline["perplexity"], 4),
            }
        },
        parameters={"perplexity": metrics["perplexity"], EVALUATION_URI_OUTPUT: output_uri},
        artifact_uri_parameters={EVALUATION_URI_OUTPUT: EVALUATION_ARTIFACT},
    )


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
