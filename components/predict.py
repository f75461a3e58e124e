"""predict: classify the texts of an unlabelled file with a registered version or an exported model.

    python -m components.predict --input_uri new_reviews.csv --text_column review --output_uri runs/predictions \\
        --registry_uri runs/registry --model_name drug-review-sentiment --version production
    python -m components.predict --input_uri new_reviews.jsonl --model_uri runs/x/onnx --output_uri runs/predictions

Reads CSV, TSV, JSON, JSON Lines or Parquet (a file or a folder, local or s3://) with preprocess's
readers; only the text column is needed. Each text is cleaned as the model's training data was (the
settings its lineage records), then classified. Writes predictions.parquet in input order: the row it
came from (`source_row`, as in evaluate's predictions), the text, the predicted label, its
probability and one probability column per class. Rows that cannot be read, or have no text, are
skipped and counted in a warning. The predictions reach --output_uri only once complete: a run that
fails leaves it as it was. A tool, not a pipeline stage.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from components.lib.cli import StageResult, run_stage
from components.lib.common_flags import DELIMITER, TEXT_COLUMN, takes_common_flags
from components.lib.data.contract import PREDICTIONS_FILE
from components.lib.data.readers import Source, SourceBatch, SourceReject, open_source, read_source
from components.lib.errors import UserError
from components.lib.modelling.inference import TextClassifier
from components.lib.modelling.predictors import load_text_classifier
from components.lib.storage.artifacts import claim_output, staged_output
from components.lib.storage.registry import model_folder

log = logging.getLogger("components.predict")
ABSTAINED_COLUMN = "abstained"  # with a model that abstains: true where its confidence is below its min_confidence


@takes_common_flags
def predict(
    *,
    input_uri: str,
    output_uri: str,
    model_uri: str = "",
    registry_uri: str = "",
    model_name: str = "",
    version: str = "latest",
    text_column: str = TEXT_COLUMN.default,
    delimiter: str = DELIMITER.default,
    encoding: str = "utf-8",
    batch_size: int = 64,
) -> StageResult:
    """Predict a label for every text of an unlabelled file; write predictions.parquet.

    Args:
      input_uri: Texts to classify: a file or folder (local or s3://) of CSV/TSV/JSON/JSONL/Parquet.
      output_uri: Folder (local or s3://) for predictions.parquet.
      model_uri: A model folder (local or s3://) written by export (ONNX) or train (PyTorch). Or --registry_uri, --model_name, --version.
      encoding: Text encoding of CSV/TSV/JSON files.
      batch_size: Rows per inference batch.
    """
    if batch_size < 1:
        raise UserError(f"--batch_size: must be positive, got {batch_size}")
    claim_output(output_uri)  # a folder of other files is refused now, not after the work
    with (
        model_folder(model_uri, registry_uri, model_name, version) as (folder, manifest, where),
        tempfile.TemporaryDirectory(prefix="predict-") as scratch,
    ):
        classifier = load_text_classifier(folder, manifest, where)
        predictions = Path(scratch) / PREDICTIONS_FILE
        with open_source(input_uri) as source:
            written, skipped = write_predictions(source, text_column, delimiter, encoding, classifier, batch_size, predictions)
        # Only finished predictions touch --output_uri: a failed run leaves nothing new there, and removes nothing.
        with staged_output(output_uri, extra={"model": where, "lineage": manifest.get("lineage", {})}) as out:
            shutil.move(predictions, out / PREDICTIONS_FILE)
    if skipped:
        first = skipped[0]
        log.warning(
            "skipped %d of %d rows that could not be read or have no text; the first: %s %s: %s",
            len(skipped), len(skipped) + written, first.source, first.position, first.detail,
        )  # fmt: skip
    return StageResult(
        summary={"tool": "predict", "model": where, "rows_predicted": written, "rows_skipped": len(skipped), "output_uri": output_uri}
    )


def write_predictions(
    source: Source, text_column: str, delimiter: str, encoding: str, classifier: TextClassifier, batch_size: int, path: Path
) -> tuple[int, list[SourceReject]]:
    """Stream the source through the classifier into `path`; (rows written, rows skipped)."""
    schema = predictions_schema(classifier.labels, abstains=classifier.min_confidence is not None)
    skipped: list[SourceReject] = []
    written = 0
    with (
        pq.ParquetWriter(path, schema) as writer,
        tqdm(total=known_rows(source), unit=" rows", desc="predict", delay=2) as progress,
    ):
        for item in read_source(source, text_column, "", delimiter, encoding):
            if isinstance(item, SourceReject):
                skipped.append(item)
                continue
            rows, texts = readable_rows(item, encoding, skipped)
            if texts:
                probabilities = classifier.probabilities(texts, batch_size)
                answers = classifier.answers(probabilities)
                abstained = classifier.abstained(probabilities)
                writer.write_table(predictions_table(rows, texts, probabilities, answers, abstained, classifier.labels, schema))
                written += len(texts)
            progress.update(len(item.positions))
    return written, skipped


def readable_rows(batch: SourceBatch, encoding: str, skipped: list[SourceReject]) -> tuple[list[str], list[str]]:
    """(source rows, texts) of the rows with a text, decoded; the others are added to `skipped`."""
    rows, texts = [], []
    for position, raw in zip(batch.positions, batch.texts):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode(batch.encoding or encoding)
            except UnicodeDecodeError as error:
                skipped.append(SourceReject(batch.source, position, "undecodable_text", f"not valid {error.encoding}; pass --encoding"))
                continue
        if raw is None or not raw.strip():
            skipped.append(SourceReject(batch.source, position, "empty_text", "no text"))
            continue
        rows.append(f"{batch.source}:{position}")
        texts.append(raw)
    return rows, texts


def predictions_schema(labels: list[str], abstains: bool) -> pa.Schema:
    fields = [("source_row", pa.string()), ("text", pa.string()), ("predicted", pa.string()), ("confidence", pa.float32())]
    return pa.schema(
        fields + [(f"prob_{label}", pa.float32()) for label in labels] + ([(ABSTAINED_COLUMN, pa.bool_())] if abstains else [])
    )


def predictions_table(
    rows: list[str], texts: list[str], probabilities, answers: list[str], abstained, labels: list[str], schema: pa.Schema
) -> pa.Table:
    """`answers`: each text's class, or (multi-label) its labels joined by "|"; confidence is the highest probability;
    `abstained` (None for a model that never abstains): whether the model abstains on each text."""
    columns = [rows, texts, answers, probabilities.max(axis=1)] + [probabilities[:, index] for index in range(len(labels))]
    return pa.table(columns + ([] if abstained is None else [abstained]), schema=schema)


def known_rows(source: Source) -> int | None:
    """The number of rows when Parquet metadata says it without reading (for the progress bar), else None."""
    if source.hf_id or not all(item.format == "parquet" for item in source.files):
        return None
    try:
        return sum(pq.ParquetFile(item.path).metadata.num_rows for item in source.files)
    except (OSError, pa.ArrowInvalid):
        return None  # the reader says what is wrong with the file


if __name__ == "__main__":
    run_stage(predict)
