"""The model card (issue 28, finding 3): the rows train really trained on, the flags that shaped the model
and only those that apply to it, and a usage example taken from the model's own test split, safely quoted."""

import ast
import dataclasses
import json
import re

import pytest

from components.lib.cards.classifier import build_model_card
from components.lib.cards.language_model import build_language_model_card
from components.lib.cards.shared import EXAMPLE_CHARACTERS, GENERIC_EXAMPLE, rows_trained_on, shaping_flags
from components.lib.data.contract import CAUSAL_LM, CLASSIFICATION, STATS_FILE, TOKENIZED_SCHEMA, read_split
from components.lib.errors import UserError
from components.lib.tasks import task_named
from components.lib.tasks.causal_lm_training import language_model_settings
from components.lib.training.settings import SETTINGS, TrainConfig, applies_to
from components.train import train
from tests.conftest import FAKE_ACCESS_KEY, LABELS, train_flags

SCORES = {"accuracy": 0.5, "macro_f1": 0.5, "weighted_f1": 0.5}
METRICS = {
    "test": {**SCORES, "per_class": {label: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 15} for label in LABELS}},
    "baseline_majority_class": SCORES,
}
LINEAGE = {"source_uri": "data/reviews.csv", "model_type": "transformer", "text_cleaning": {"mask_urls": False, "mask_mentions": False}}
DATA_STATS = {"splits": {"train": {"rows": 1279}, "test": {"rows": 45}}}


def classifier_card(training: dict | None = None, train_summary: dict | None = None, test_texts=(), **lineage) -> str:
    return build_model_card(
        "reviews", 1, LABELS, {**LINEAGE, **lineage}, training or {}, train_summary or {}, METRICS, {}, DATA_STATS, {}, False, test_texts
    )


def language_model_card(training: dict, train_summary: dict | None = None, samples: tuple = ()) -> str:
    metrics = {"test": {"perplexity": 20.0}, "samples": list(samples)}
    stats = {"splits": {"train": {"blocks": 2058}}}
    return build_language_model_card("lm", 1, {"text_cleaning": {}}, training, train_summary or {}, metrics, {}, stats, {})


def settings(**changed) -> dict:
    """What train records in training_args.json for these flags."""
    return dataclasses.asdict(TrainConfig(**changed))


def flags_table(card: str) -> dict[str, str]:
    return dict(re.findall(r"^\| (\w+) \| (.*) \|$", card.split("| flag | value |", 1)[1].split("\n\n", 1)[0], re.MULTILINE))


def snippet_example(card: str, function: str = "classify") -> str:
    """The text the card's snippet gives `function`, found as a reader finds the snippet: the first ```python block."""
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    calls = [node for node in ast.walk(ast.parse(snippet)) if isinstance(node, ast.Call) and function in ast.unparse(node.func)]
    return ast.literal_eval(calls[-1].args[0])


def test_train_records_the_rows_it_trained_on_and_the_card_states_them(prepared_data, tiny_model, tmp_path):
    _, tokens = prepared_data
    train(
        data_uri=str(tokens), output_uri=str(tmp_path / "model"), base_model=str(tiny_model), **train_flags(epochs=1, max_train_samples=40)
    )
    summary = json.loads((tmp_path / "model" / "train_summary.json").read_text())
    training = json.loads((tmp_path / "model" / "training_args.json").read_text())
    assert summary["train_rows"] == {"used": 40, "of": 162}
    card = classifier_card(training, summary)
    assert "- Trained on 40 of 162 train rows (max_train_samples=40); scores below come from" in card
    assert flags_table(card)["max_train_samples"] == "40"


@pytest.mark.parametrize(
    "recorded, cap, stated",
    [
        ({"used": 1279, "of": 1279}, 0, "1279 rows"),
        ({"used": 1279, "of": 1279}, 5000, "1279 rows"),  # a cap above the split's size takes every row
        ({"used": 600, "of": 1279}, 600, "600 of 1279 train rows (max_train_samples=600)"),
        (None, 0, "1279 rows"),  # a model trained before train recorded its rows: the split's
        (None, 600, "at most 600 of 1279 train rows (max_train_samples=600; the count was not recorded)"),
    ],
)
def test_the_card_states_the_rows_train_recorded_not_the_splits_size(recorded, cap, stated):
    summary = {"train_rows": recorded} if recorded else {}
    assert rows_trained_on(summary, {"max_train_samples": cap}, 1279) == stated
    assert f"- Trained on {stated}; scores below" in classifier_card({"max_train_samples": cap}, summary)


def test_a_language_models_card_states_the_blocks_it_trained_on():
    summary = {"train_rows": {"used": 600, "of": 2058}}
    card = language_model_card({"max_train_samples": 600}, summary)
    assert "; trained\n  on 600 of 2058 train blocks (max_train_samples=600): tiny data" in card


def test_the_flags_table_shows_what_shaped_a_classifier_and_no_flag_that_does_not_apply_to_it():
    training = settings(max_train_samples=600, lm_size="small", curriculum="length", eval_batch_size=8, cnn_pretrained_embeddings=True)
    shown = flags_table(classifier_card(training))
    assert shown["max_train_samples"] == "600" and shown["curriculum"] == "length"  # set off their defaults
    assert shown["epochs"] == "4" and shown["learning_rate"] == "0.0001"  # on every card
    assert "lm_size" not in shown  # a language model's
    assert "cnn_pretrained_embeddings" not in shown  # a CNN's
    assert "eval_batch_size" not in shown  # changes how the run went, not the model
    assert "max_steps" not in shown and "curriculum_epochs" not in shown  # at their defaults
    cnn = flags_table(classifier_card(settings(model_type="cnn", cnn_pretrained_embeddings=True), model_type="cnn"))
    assert cnn["cnn_pretrained_embeddings"] == "True" and cnn["model_type"] == "cnn"


def test_the_flags_table_of_a_language_model_leaves_out_the_classifiers_flags():
    training = settings(lm_size="small", label_smoothing=0.1, max_train_samples=600)
    card = language_model_card(training)
    shown = flags_table(card)
    assert shown["lm_size"] == "small" and shown["max_train_samples"] == "600"
    assert not {"model_type", "teacher_uri", "class_weights", "label_smoothing", "curriculum"} & set(shown)
    assert set(shaping_flags(training, CAUSAL_LM)) == set(shown)


def off_default(spec: dataclasses.Field):
    """A value of the setting other than its default (valid or not: only its difference counts here)."""
    if spec.metadata["choices"]:
        return next(choice for choice in spec.metadata["choices"] if choice != spec.default)
    if isinstance(spec.default, bool):
        return not spec.default
    return spec.default + "x" if isinstance(spec.default, str) else spec.default + 1


def refused_for_a_language_model(spec: dataclasses.Field) -> bool:
    """Whether train refuses the setting itself (not one value of it) for causal_lm data."""
    try:
        language_model_settings(TrainConfig(**{spec.name: off_default(spec)}))
    except UserError as refusal:
        return str(refusal).startswith(f"--{spec.name}: not available for causal_lm data")
    return False


def test_every_setting_train_refuses_for_a_language_model_is_declared_not_to_apply_to_one():
    """Train's refusals and the settings' `only_for` must tell the same story, or a card shows a flag train ignores."""
    refused = [spec for spec in SETTINGS if refused_for_a_language_model(spec)]
    assert refused, "train refuses no setting for causal_lm data any more, or words it otherwise: update this test"
    assert [spec.name for spec in refused if applies_to(spec, CAUSAL_LM)] == []


def test_the_snippet_classifies_the_first_text_of_the_models_own_test_split(prepared_data):
    """Through register's card writer, on a real tokenized data folder (its labels.json stands in for the export's)."""
    _, tokens = prepared_data
    facts = {"lineage": LINEAGE, "training": {}, "train_summary": {}, "metrics": METRICS, "export_report": {}, "code_version": {},
             "data_stats": json.loads((tokens / STATS_FILE).read_text())}  # fmt: skip
    card = task_named(CLASSIFICATION).model_card("reviews", 1, tokens, {"files": []}, facts, tokens)
    first = read_split(tokens, "test", TOKENIZED_SCHEMA, columns=["text"]).column("text")[0].as_py()
    assert snippet_example(card) == first != GENERIC_EXAMPLE
    assert "The side effects were mild" not in card


def test_the_example_is_quoted_so_that_the_snippet_stays_python_and_inside_its_fence():
    tricky = "He said \"it's fine\" \\ ```not code``` ''' ok\nnext\tline " + "word " * 40
    example = snippet_example(classifier_card(test_texts=["", " \n ", tricky]))
    assert example.startswith("He said \"it's fine\" \\ ```not code``` ''' ok next line word")  # white space folded, as clean() does
    assert len(example) <= EXAMPLE_CHARACTERS + len(" ...") and example.endswith("word ...")


def test_a_language_models_prompt_is_quoted_inside_its_fence_too():
    prompt = 'it said ```\\ "done"\n'
    card = language_model_card({}, samples=[{"seed": 0, "prompt": prompt, "continuation": " ok"}])
    assert snippet_example(card, "tokenizer.encode") == prompt


def test_no_example_with_a_credential_reaches_the_card_and_none_falls_back_to_a_generic_text():
    leaked = f"my key is {FAKE_ACCESS_KEY}, great drug"
    card = classifier_card(test_texts=[leaked, "the second test text"])
    assert FAKE_ACCESS_KEY not in card and snippet_example(card) == "the second test text"
    assert snippet_example(classifier_card(test_texts=[leaked])) == GENERIC_EXAMPLE
    assert snippet_example(classifier_card(test_texts=[])) == GENERIC_EXAMPLE
