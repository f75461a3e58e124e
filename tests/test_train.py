"""train: the loop, every training control taking effect, best weights, and reproducibility."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from components.lib.data.batching import TokenizedSplit, plan_epoch
from components.lib.errors import UserError
from components.lib.training import checkpoint
from components.lib.training.distributed import Distributed
from components.lib.training.optim import parameter_groups
from components.lib.training.reporters import Reporters
from components.lib.training.settings import SETTINGS, TrainConfig
from components.lib.training.trainer import FineTuner, TunerInputs
from components.train import train
from tests.conftest import train_flags


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def max_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max(float((first[name] - second[name]).abs().max()) for name in first)


def run(tokens: Path, model: Path, out: Path, **overrides) -> dict:
    result = train(data_uri=str(tokens), output_uri=str(out), base_model=str(model), **train_flags(**overrides))
    return result.summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared_data, tiny_model):
    out = tmp_path_factory.mktemp("trained") / "model"
    summary = run(prepared_data[1], tiny_model, out, epochs=5, batch_size=4, learning_rate=3e-3)
    return out, summary


def test_output_is_a_hugging_face_folder_with_tokenizer_labels_and_history(trained):
    out, summary = trained
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "labels.json",
        "training_history.json",
        "train_summary.json",
        "MANIFEST.json",
    } <= {path.name for path in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    history = json.loads((out / "training_history.json").read_text())
    assert [entry["epoch"] for entry in history["epochs"]] == [1, 2, 3, 4, 5]
    assert all({"train_loss", "learning_rate", "validation"} <= set(entry) for entry in history["epochs"])
    assert {"accuracy", "macro_f1", "loss"} <= set(history["epochs"][0]["validation"])
    assert summary["best"]["metric"] == "macro_f1"


def test_the_saved_weights_are_the_best_evaluation(trained, prepared_data):
    out, _ = trained
    from components.lib.modelling.families import load_model
    from components.lib.modelling.inference import predict_logits
    from components.lib.reporting.metrics import classification_metrics

    history = json.loads((out / "training_history.json").read_text())
    best = max(history["evaluations"], key=lambda entry: entry["validation"]["macro_f1"])
    model = load_model(out, str(out))
    validation = TokenizedSplit.load(prepared_data[1], "validation")
    predicted = predict_logits(model, validation, 64, torch.device("cpu"), 0).argmax(axis=1)
    assert classification_metrics(validation.labels, predicted, ["negative", "neutral", "positive"])["macro_f1"] == pytest.approx(
        best["validation"]["macro_f1"], abs=1e-4
    )


def test_the_model_learns_the_sample(trained):
    _, summary = trained
    assert summary["best"]["value"] > 0.6  # a 3-class task whose majority baseline has macro-F1 0.17


def test_same_seed_same_weights(prepared_data, tiny_model, tmp_path):
    run(prepared_data[1], tiny_model, tmp_path / "a", epochs=1)
    run(prepared_data[1], tiny_model, tmp_path / "b", epochs=1)
    run(prepared_data[1], tiny_model, tmp_path / "c", epochs=1, seed=7)
    assert max_difference(weights(tmp_path / "a"), weights(tmp_path / "b")) == 0.0
    assert max_difference(weights(tmp_path / "a"), weights(tmp_path / "c")) > 0.0


def test_accumulation_over_k_steps_equals_one_k_times_larger_batch(prepared_data, tiny_model_without_dropout, tmp_path):
    common = {"epochs": 1, "group_by_length": False, "eval_every_steps": 0}
    run(prepared_data[1], tiny_model_without_dropout, tmp_path / "accumulated", batch_size=4, grad_accum_steps=4, **common)
    run(prepared_data[1], tiny_model_without_dropout, tmp_path / "large", batch_size=16, grad_accum_steps=1, **common)
    run(prepared_data[1], tiny_model_without_dropout, tmp_path / "small", batch_size=4, grad_accum_steps=1, **common)
    accumulated, large = weights(tmp_path / "accumulated"), weights(tmp_path / "large")
    assert max_difference(accumulated, large) < 2e-6
    assert max_difference(accumulated, weights(tmp_path / "small")) > 1e-3


def test_early_stopping_stops(prepared_data, tiny_model, tmp_path):
    summary = run(
        prepared_data[1],
        tiny_model,
        tmp_path / "out",
        epochs=5,
        eval_every_steps=3,
        early_stopping_patience=2,
        early_stopping_min_delta=1.0,
    )
    history = json.loads((tmp_path / "out" / "training_history.json").read_text())
    assert summary["steps"] == 9  # best at the first evaluation, then two without improvement
    assert [entry["step"] for entry in history["evaluations"]] == [3, 6, 9]
    assert json.loads((tmp_path / "out" / "train_summary.json").read_text())["stopped_early"] is True


def test_frozen_encoder_does_not_change_for_its_epochs(prepared_data, tiny_model, tmp_path):
    run(prepared_data[1], tiny_model, tmp_path / "frozen", epochs=1, freeze_encoder_epochs=1)
    run(
        prepared_data[1],
        tiny_model,
        tmp_path / "thawed",
        epochs=2,
        freeze_encoder_epochs=1,
        metric_for_best="loss",
        early_stopping_min_delta=0.0,
    )
    base = load_file(str(tiny_model / "model.safetensors"))
    for name, before, after_frozen, after_thawed in (
        (name, base[name], weights(tmp_path / "frozen")[f"bert.{name}"], weights(tmp_path / "thawed")[f"bert.{name}"]) for name in base
    ):
        assert torch.equal(before, after_frozen), name
    assert max_difference({k: v for k, v in weights(tmp_path / "thawed").items() if k.startswith("bert.encoder")},
                          {k: v for k, v in weights(tmp_path / "frozen").items() if k.startswith("bert.encoder")}) > 0  # fmt: skip
    assert not torch.equal(weights(tmp_path / "frozen")["classifier.weight"], torch.zeros(3, 32))


def make_tuner(prepared_data, tiny_model, tmp_path, **overrides) -> FineTuner:
    from components.lib.modelling.classifier import ModelRequest
    from components.lib.modelling.huggingface import HuggingFaceClassifier

    flags = {**TRAIN_DEFAULTS, **overrides}
    config = TrainConfig(**flags)
    torch.manual_seed(0)
    labels = ["negative", "neutral", "positive"]
    model = HuggingFaceClassifier.create(ModelRequest(str(tiny_model), str(tiny_model), labels, vocab_size=0))
    tokens = prepared_data[1]
    return FineTuner(TunerInputs(config=config, model=model, label_names=["negative", "neutral", "positive"],
                                 train=TokenizedSplit.load(tokens, "train"), validation=TokenizedSplit.load(tokens, "validation"), pad_id=0,
                                 work_dir=tmp_path, checkpoint_uri="", identity={}, reporters=Reporters([], tmp_path, {}),
                                 distributed=Distributed()))  # fmt: skip


# The settings' own defaults, made fast and deterministic for the tiny model.
TRAIN_DEFAULTS = {
    **{spec.name: spec.default for spec in SETTINGS},
    **{"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0, "precision": "fp32", "seed": 1},
    **{"class_weights": "none", "logging_steps": 1},
}


def test_no_weight_decay_on_biases_and_layer_norms_and_layerwise_lr_decay(prepared_data, tiny_model, tmp_path):
    tuner = make_tuner(prepared_data, tiny_model, tmp_path)
    groups = parameter_groups(tuner.model, 1.0, 0.01, 0.5)
    names = {id(parameter): name for name, parameter in tuner.model.named_parameters()}
    by_name = {names[id(parameter)]: group for group in groups for parameter in group["params"]}
    assert by_name["network.bert.encoder.layer.0.attention.self.query.bias"]["weight_decay"] == 0.0
    assert by_name["network.bert.embeddings.LayerNorm.weight"]["weight_decay"] == 0.0
    assert by_name["network.bert.encoder.layer.0.attention.self.query.weight"]["weight_decay"] == 0.01
    assert by_name["network.classifier.weight"]["lr"] == 1.0
    assert by_name["network.bert.encoder.layer.1.output.dense.weight"]["lr"] == 0.5
    assert by_name["network.bert.encoder.layer.0.output.dense.weight"]["lr"] == 0.25
    assert by_name["network.bert.embeddings.word_embeddings.weight"]["lr"] == 0.125
    assert sum(len(group["params"]) for group in groups) == len(list(tuner.model.parameters()))


def test_layerwise_lr_decay_takes_effect(prepared_data, tiny_model, tmp_path):
    run(prepared_data[1], tiny_model, tmp_path / "flat", epochs=1)
    run(prepared_data[1], tiny_model, tmp_path / "decayed", epochs=1, layerwise_lr_decay=0.1)
    base = load_file(str(tiny_model / "model.safetensors"))["embeddings.word_embeddings.weight"]
    moved_flat = (weights(tmp_path / "flat")["bert.embeddings.word_embeddings.weight"] - base).abs().sum()
    moved_decayed = (weights(tmp_path / "decayed")["bert.embeddings.word_embeddings.weight"] - base).abs().sum()
    assert moved_decayed < moved_flat / 5


def test_class_weights_are_balanced_and_label_smoothing_enters_the_loss(prepared_data, tiny_model, tmp_path):
    tuner = make_tuner(prepared_data, tiny_model, tmp_path, class_weights="balanced", label_smoothing=0.2)
    counts = np.bincount(tuner.train_split.labels, minlength=3)
    assert torch.allclose(tuner.loss_weights, torch.tensor(counts.sum() / (3 * counts), dtype=torch.float32))
    batch = tuner.train_split.collate(np.arange(8), 0)
    tuner.model.eval()  # no dropout, so the loss can be recomputed
    tuner.train_model = tuner.model
    with torch.no_grad():
        logits = tuner.model(batch["input_ids"], batch["attention_mask"])
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=tuner.loss_weights, label_smoothing=0.2, reduction="sum")
    plain = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
    loss = float(tuner.forward_backward(batch, 8))
    assert loss == pytest.approx(float(expected), rel=1e-6)
    assert loss != pytest.approx(float(plain), rel=1e-6)


@pytest.mark.parametrize(
    "scheduler, warmup, check",
    [
        ("linear", {"warmup_steps": 3}, lambda lrs: lrs[0] < lrs[1] < lrs[2] and lrs[-1] < lrs[3] / 10),
        # --warmup_steps alone, beside the stage's default --warmup_ratio 0.1: the steps win.
        ("linear", {"warmup_steps": 3, "warmup_ratio": 0.1}, lambda lrs: lrs[0] < lrs[1] < lrs[2] == max(lrs)),
        ("cosine", {"warmup_ratio": 0.2}, lambda lrs: max(lrs) == pytest.approx(0.01, rel=0.2) and lrs[-1] < 1e-3),
        (
            "cosine_with_restarts",
            {"warmup_steps": 0, "num_cycles": 2},
            lambda lrs: any(later > earlier * 5 for earlier, later in zip(lrs, lrs[1:])),
        ),
        ("constant_with_warmup", {"warmup_steps": 3}, lambda lrs: lrs[0] < lrs[2] and len(set(lrs[3:])) == 1),
    ],
)
def test_schedulers(scheduler, warmup, check, prepared_data, tiny_model, tmp_path):
    run(
        prepared_data[1], tiny_model, tmp_path / "out", epochs=1, scheduler=scheduler, learning_rate=0.01, **{"warmup_ratio": 0.0, **warmup}
    )
    steps = json.loads((tmp_path / "out" / "training_history.json").read_text())["steps"]
    assert check([entry["learning_rate"] for entry in steps]), [entry["learning_rate"] for entry in steps]


def test_bf16_autocast_on_cpu_when_asked_and_fp16_refused(prepared_data, tiny_model, tmp_path):
    run(prepared_data[1], tiny_model, tmp_path / "bf16", epochs=1, precision="bf16")
    run(prepared_data[1], tiny_model, tmp_path / "fp32", epochs=1)
    assert json.loads((tmp_path / "bf16" / "train_summary.json").read_text())["precision"] == "bfloat16"
    assert json.loads((tmp_path / "fp32" / "train_summary.json").read_text())["precision"] == "float32"
    assert max_difference(weights(tmp_path / "bf16"), weights(tmp_path / "fp32")) > 0  # autocast really ran
    with pytest.raises(UserError, match="fp16: needs a CUDA GPU"):
        run(prepared_data[1], tiny_model, tmp_path / "fp16", epochs=1, precision="fp16")


def test_torch_compile_with_inductor_takes_effect_and_changes_nothing_else(prepared_data, tiny_model_without_dropout, tmp_path):
    """The default backend, inductor, really generates kernels (a C++ compiler is on the machine)."""
    from torch._dynamo.utils import counters

    tuner = make_tuner(prepared_data, tiny_model_without_dropout, tmp_path, compile=True, compile_backend="inductor")
    tuner.set_frozen(False)
    assert type(tuner.train_model).__name__ == "OptimizedModule"
    counters.clear()
    run(prepared_data[1], tiny_model_without_dropout, tmp_path / "compiled", epochs=1, max_steps=4, compile=True)
    compiled_graphs = counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"]
    assert compiled_graphs > 0, {name: dict(counter) for name, counter in counters.items()}
    run(prepared_data[1], tiny_model_without_dropout, tmp_path / "eager", epochs=1, max_steps=4)
    assert max_difference(weights(tmp_path / "compiled"), weights(tmp_path / "eager")) < 1e-5


def test_dataloader_workers_give_the_same_result(prepared_data, tiny_model, tmp_path):
    run(prepared_data[1], tiny_model, tmp_path / "inline", epochs=1)
    run(prepared_data[1], tiny_model, tmp_path / "workers", epochs=1, num_workers=2)
    assert max_difference(weights(tmp_path / "inline"), weights(tmp_path / "workers")) == 0.0


def test_pinned_memory_is_asked_for_on_gpus_only(prepared_data, tiny_model, tmp_path):
    tuner = make_tuner(prepared_data, tiny_model, tmp_path, num_workers=0)
    batches = tuner.plan(0)
    assert tuner.loader(batches, 0).pin_memory is False  # CPU: nothing to pin for
    tuner.device = torch.device("cuda")
    assert tuner.loader(batches, 0).pin_memory is True
    tuner.config.pin_memory = False
    assert tuner.loader(batches, 0).pin_memory is False


def test_length_grouping_pads_less_and_keeps_a_seeded_order(prepared_data):
    lengths = TokenizedSplit.load(prepared_data[1], "train").lengths

    def padding(batches):
        return 1 - sum(lengths[batch].sum() for batch in batches) / sum(lengths[batch].max() * len(batch) for batch in batches)

    grouped = plan_epoch(lengths, 8, seed=3, epoch=0, group_by_length=True)
    assert padding(grouped) < padding(plan_epoch(lengths, 8, seed=3, epoch=0, group_by_length=False)) / 2
    assert [list(batch) for batch in grouped] == [list(batch) for batch in plan_epoch(lengths, 8, seed=3, epoch=0, group_by_length=True)]
    assert [list(batch) for batch in grouped] != [list(batch) for batch in plan_epoch(lengths, 8, seed=3, epoch=1, group_by_length=True)]
    assert sorted(np.concatenate(grouped)) == list(range(len(lengths)))


def test_evaluation_every_n_steps_and_max_steps(prepared_data, tiny_model, tmp_path):
    summary = run(prepared_data[1], tiny_model, tmp_path / "out", epochs=3, eval_every_steps=4, max_steps=10)
    history = json.loads((tmp_path / "out" / "training_history.json").read_text())
    assert summary["steps"] == 10
    assert [entry["step"] for entry in history["evaluations"]] == [4, 8, 10]


def test_tensorboard_logs_are_written_and_a_missing_reporter_is_one_line(prepared_data, tiny_model, tmp_path, monkeypatch):
    run(prepared_data[1], tiny_model, tmp_path / "out", epochs=1, report_to="tensorboard")
    assert list((tmp_path / "out" / "logs").glob("events.out.tfevents.*"))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # absent, whether or not this machine has it
    with pytest.raises(
        UserError, match="--report_to mlflow: the mlflow-skinny package is not installed; pip install mlflow-skinny or drop it"
    ):
        run(prepared_data[1], tiny_model, tmp_path / "mlflow", epochs=1, report_to="mlflow")


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"batch_size": 0}, "--batch_size: must be at least 1"),
        ({"scheduler": "step"}, "--scheduler: 'step' is not one of"),
        ({"metric_for_best": "f1"}, "--metric_for_best: 'f1' is not one of"),
        ({"label_smoothing": 1.5}, "--label_smoothing: must be in [0, 1)"),
        ({"report_to": "slack"}, "--report_to: unknown reporter 'slack'"),
    ],
)
def test_bad_training_flags_are_user_errors(flags, message, prepared_data, tiny_model, tmp_path):
    with pytest.raises(UserError) as error:
        run(prepared_data[1], tiny_model, tmp_path / "out", **flags)
    assert message in str(error.value)


def test_checkpoints_keep_the_last_k(prepared_data, tiny_model, tmp_path):
    run(
        prepared_data[1],
        tiny_model,
        tmp_path / "out",
        epochs=1,
        checkpoint_uri=str(tmp_path / "ckpt"),
        checkpoint_every_steps=4,
        keep_checkpoints=2,
        keep_checkpoints_after_training=True,
    )
    assert checkpoint.committed_steps(str(tmp_path / "ckpt")) == [16, 20]
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["best", "step-00000016", "step-00000020"]


def test_a_finished_run_removes_its_checkpoints_and_says_how_much_it_freed(prepared_data, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO", logger="components.train")
    checkpoints = tmp_path / "ckpt"
    run(prepared_data[1], tiny_model, tmp_path / "out", epochs=1, checkpoint_uri=str(checkpoints), run_id="run-1", checkpoint_every_steps=4)
    assert json.loads((tmp_path / "out" / "MANIFEST.json").read_text())["lineage"]["run_id"] == "run-1"  # the report shows it
    assert not (checkpoints / "run-1").exists()
    [line] = [record.getMessage() for record in caplog.records if "removed the checkpoints" in record.getMessage()]
    assert f"from {checkpoints / 'run-1'} (best, step-00000016, step-00000020), freeing " in line
    assert float(line.split("freeing ")[1].split(" MB")[0]) > 0.1  # three copies of the tiny model's weights, and two optimizer states


def test_the_logged_training_loss_is_the_mean_of_its_interval(prepared_data, tiny_model, tmp_path):
    run(prepared_data[1], tiny_model, tmp_path / "every", epochs=1, max_steps=12, logging_steps=1)
    run(prepared_data[1], tiny_model, tmp_path / "fifth", epochs=1, max_steps=12, logging_steps=5)
    every = [entry["loss"] for entry in json.loads((tmp_path / "every" / "training_history.json").read_text())["steps"]]
    fifth = json.loads((tmp_path / "fifth" / "training_history.json").read_text())["steps"]
    assert [entry["step"] for entry in fifth] == [1, 5, 10, 12]  # the first step, each fifth, and the rest at the end
    expected = [every[0], np.mean(every[1:5]), np.mean(every[5:10]), np.mean(every[10:12])]
    assert [entry["loss"] for entry in fifth] == pytest.approx(expected, rel=1e-9)


def test_the_host_reads_the_losses_only_when_a_sum_is_needed_not_every_step(prepared_data, tiny_model, tmp_path, monkeypatch):
    """Reading a loss on the host waits for the GPU: the loop leaves them on the device until logging,
    evaluation, a checkpoint or the end of an epoch needs a sum (the logged values: the test above)."""
    settled = []
    settle = FineTuner.settle_losses

    def recording(tuner: FineTuner) -> None:
        if tuner.unsettled_losses:
            settled.append((tuner.progress.global_step, len(tuner.unsettled_losses)))
        settle(tuner)

    monkeypatch.setattr(FineTuner, "settle_losses", recording)
    run(prepared_data[1], tiny_model, tmp_path / "fifth", epochs=1, max_steps=12, logging_steps=5)
    assert settled == [(1, 1), (5, 4), (10, 5), (12, 2)]


def test_settled_losses_are_each_steps_loss_sum_over_its_rows(prepared_data, tiny_model, tmp_path):
    tuner = make_tuner(prepared_data, tiny_model, tmp_path)
    tuner.unsettled_losses = [([torch.tensor(3.0), torch.tensor(5.0)], 4), ([torch.tensor(6.0)], 3)]  # two micro-batches, then one
    tuner.settle_losses()
    progress = tuner.progress
    assert (progress.epoch_loss_sum, progress.epoch_loss_steps) == (2.0 + 2.0, 2)
    assert (progress.logging_loss_sum, progress.interval_loss_sum) == (4.0, 4.0)
    assert tuner.unsettled_losses == []


def test_max_train_samples_trains_on_a_seeded_sample_and_says_so(prepared_data, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO", logger="components.train")
    summary = run(prepared_data[1], tiny_model, tmp_path / "out", epochs=1, max_train_samples=40)
    assert summary["steps"] == 5  # 40 rows in batches of 8
    assert "--max_train_samples 40: training on 40 of 162 training rows (a sample drawn with --seed 42)" in caplog.text
    assert "training rows = 40, validation rows = " in caplog.text
    caplog.clear()
    assert run(prepared_data[1], tiny_model, tmp_path / "all", epochs=1, max_train_samples=1000)["steps"] == 21
    assert "--max_train_samples 1000: the training split has only 162 rows; training on all of them" in caplog.text
    with pytest.raises(UserError, match="--max_train_samples: must not be negative, got -1"):
        run(prepared_data[1], tiny_model, tmp_path / "negative", epochs=1, max_train_samples=-1)


def test_train_prints_a_header_with_rows_steps_device_precision_and_parameters(prepared_data, tiny_model, tmp_path, caplog):
    caplog.set_level("INFO", logger="components.train")
    run(prepared_data[1], tiny_model, tmp_path / "out", epochs=3, batch_size=4, grad_accum_steps=2, max_steps=7, freeze_encoder_epochs=1)
    start = caplog.messages.index("***** Running training *****")
    header = "\n".join(caplog.messages[start : start + 8])
    for expected in (
        "training rows = 162, validation rows = 18",
        "epochs = 3 (stopping at --max_steps 7)",
        "batch size per device = 4, processes = 1, gradient accumulation steps = 2, rows per optimizer step = 8",
        "optimization steps = 7 (21 per epoch)",
        "device = cpu, precision = float32 (auto: this CPU has no native bf16 (AVX512-BF16 or AMX); emulated bf16 is slower than fp32)",
        "parameters = 24,163 (99 trained in the first 1 epoch(s))",  # 99: the 32x3 classifier and its bias
    ):
        assert expected in header, header


def test_a_pod_that_sees_fewer_gpus_than_it_asked_for_stops_before_any_work(prepared_data, tiny_model, tmp_path):
    """On Kubeflow, --expected_gpus is the pod's own GPU limit: a limit the cluster dropped must not
    become hours of training on CPU. This machine has no GPU."""
    _, tokens = prepared_data
    with pytest.raises(
        UserError, match=r"--expected_gpus 1: this task sees 0 GPU\(s\); the cluster did not apply the nvidia.com/gpu limit"
    ):
        train(data_uri=str(tokens), output_uri=str(tmp_path / "model"), base_model=str(tiny_model), expected_gpus="1", **train_flags())
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("flag, value", [("run_id", "../other-run"), ("trial", "a/b"), ("trial", "..")])
def test_checkpoint_folders_from_flags_stay_under_the_checkpoint_uri(flag, value, prepared_data, tiny_model, tmp_path):
    _, tokens = prepared_data
    with pytest.raises(UserError, match=f"--{flag} '{value}': must be one folder name"):
        train(data_uri=str(tokens), output_uri=str(tmp_path / "model"), base_model=str(tiny_model),
              checkpoint_uri=str(tmp_path / "checkpoints"), **{flag: value}, **train_flags())  # fmt: skip
    assert not (tmp_path / "model").exists() and not (tmp_path / "other-run").exists()


def test_a_sweep_trial_checkpoints_under_its_run_and_trial(prepared_data, tiny_model, tmp_path):
    """A cloned sweep run has a new run id, so it never resumes the old run's trial checkpoints."""
    _, tokens = prepared_data
    train(data_uri=str(tokens), output_uri=str(tmp_path / "model"), base_model=str(tiny_model), checkpoint_uri=str(tmp_path / "ckpt"),
          run_id="run-2", trial="trial-0", checkpoint_every_steps=5, keep_checkpoints_after_training=True, **train_flags(epochs=1))  # fmt: skip
    assert list((tmp_path / "ckpt" / "run-2" / "trial-0").glob("step-*/MANIFEST.json"))


def test_each_setting_is_declared_once_and_reaches_the_flags_the_help_and_the_pipeline():
    """components/lib/training/settings.py is the one table: train's signature, its --help, TrainConfig,
    the pipeline parameters, the sweep and the model card all come from it."""
    import inspect

    import docstring_parser

    from components.lib.cards.shared import ON_MODEL_CARD
    from pipelines.parameters import pipeline_parameters
    from pipelines.pipeline import PAUSE_FLAG, SWEEPABLE

    signature = inspect.signature(train).parameters
    described = {item.arg_name: item.description for item in docstring_parser.parse(train.__doc__).params}
    parameters = {parameter.name: parameter for parameter in pipeline_parameters()[0]}
    for spec in SETTINGS:
        assert signature[spec.name].default == spec.default and described[spec.name] == spec.metadata["help"], spec.name
        assert inspect.get_annotations(train, eval_str=True)[spec.name] in (int, float, str, bool), spec.name
        assert (spec.name in parameters) == (spec.name != PAUSE_FLAG), spec.name  # the pause: only a halving sweep sets it
    assert set(SWEEPABLE) == {spec.name for spec in SETTINGS if spec.metadata["sweepable"]}
    assert set(ON_MODEL_CARD) == {spec.name for spec in SETTINGS if spec.metadata["card"]}
    assert list(signature)[-1] == "executor_input"
