"""The training settings, each declared once: its default, its help, its checks, and whether a sweep
may vary it, a resumed run must share it, the model card shows it, and which kinds of model it
applies to (`only_for`; the card leaves the others out).

`components/train.py` takes these as its flags (its signature and help are built from this table),
the pipelines' parameters come from that signature, `pipelines/pipeline.py` takes SWEEPABLE from
here, checkpoints compare `resume_relevant()`, and the model card lists ON_MODEL_CARD and what else shaped the model.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.lib.cli import EXECUTOR_INPUT_FLAG
from components.lib.common_flags import with_args
from components.lib.data.batching import PACINGS
from components.lib.data.contract import CAUSAL_LM
from components.lib.errors import UserError
from components.lib.modelling.cnn import CnnClassifier
from components.lib.modelling.families import MODEL_TYPES
from components.lib.modelling.language_model import LM_SIZES
from components.lib.reporting.metrics import HIGHER_IS_BETTER
from components.lib.training.optim import SCHEDULERS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CLASS_WEIGHTS = ("balanced", "none")
CURRICULA = ("none", "length", "rarity")
AT_LEAST_ONE = (1, math.inf, "[]")
NOT_NEGATIVE = (0, math.inf, "[]")
POSITIVE = (0, math.inf, "()")
# A model's kind, for `only_for`: a classifier's --model_type, or CAUSAL_LM for a language model.
CLASSIFIERS = tuple(MODEL_TYPES)
LANGUAGE_MODELS = (CAUSAL_LM,)
CNNS = (CnnClassifier.model_type,)


def setting(
    default: Any,
    help: str,  # noqa: A002 - the word Fire and docstrings use
    *,
    sweepable: bool = False,
    resume: bool = True,
    card: bool = False,
    within: tuple[float, float, str] | None = None,
    choices: tuple[str, ...] | None = None,
    only_for: tuple[str, ...] | None = None,
):
    """A TrainConfig field. `within` is (low, high, brackets) with brackets such as "[)"; `resume`
    False for settings that change how a run goes, not what it computes (batch sizes of evaluation,
    logging, checkpoint cadence, compilation); `only_for` the kinds of model it applies to (None: all)."""
    metadata = {"help": help, "sweepable": sweepable, "resume": resume, "card": card, "within": within, "choices": choices,
                "only_for": only_for}  # fmt: skip
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    model_type: str = setting("transformer", "transformer (fine-tune the base model) or cnn (a Kim-style CNN over the base model's"
                              " token ids; try --learning_rate 1e-3).", sweepable=True, card=True, only_for=CLASSIFIERS)  # fmt: skip
    lm_size: str = setting("tiny", "causal_lm: a GPT-2 trained from scratch, tiny (2 layers of width 128), small (6 x 384), 40m"
                           " (8 x 640) or gpt2 (12 x 768); pretrained fine-tunes --base_model.", sweepable=True, card=True,
                           choices=LM_SIZES, only_for=LANGUAGE_MODELS)  # fmt: skip
    cnn_pretrained_embeddings: bool = setting(False, "cnn: start from the base model's input embeddings instead of random 128-wide ones.",
                                              only_for=CNNS)  # fmt: skip
    epochs: int = setting(4, "Passes over the training split.", sweepable=True, card=True, within=AT_LEAST_ONE)
    batch_size: int = setting(16, "Rows per batch on each device (the global batch is this times the number of processes).",
                              sweepable=True, card=True, within=AT_LEAST_ONE)  # fmt: skip
    eval_batch_size: int = setting(64, "Rows per batch when evaluating.", resume=False, within=AT_LEAST_ONE)
    learning_rate: float = setting(1e-4, "Peak learning rate of AdamW (reached after warmup); 1e-4 suits small encoders (MiniLM);"
                                   " try 2e-5 to 5e-5 for BERT-base.", sweepable=True, card=True, within=POSITIVE)  # fmt: skip
    weight_decay: float = setting(0.01, "AdamW weight decay; biases and LayerNorm weights get none.", sweepable=True, card=True)
    scheduler: str = setting("linear", "Learning-rate schedule: linear, cosine, cosine_with_restarts or constant_with_warmup.",
                             sweepable=True, card=True, choices=SCHEDULERS)  # fmt: skip
    warmup_steps: int = setting(0, "Warmup length in optimizer steps; above 0 it overrides warmup_ratio.", card=True, within=NOT_NEGATIVE)
    warmup_ratio: float = setting(0.1, "Warmup length as a share of all optimizer steps.", sweepable=True, card=True, within=(0, 1, "[)"))
    num_cycles: float = setting(0.0, "cosine: waves over the run (0 = 0.5, a half wave); cosine_with_restarts: restarts (0 = 1).")
    max_grad_norm: float = setting(1.0, "Clip the gradient norm to this; 0 turns clipping off.", card=True)
    grad_accum_steps: int = setting(1, "Micro-batches accumulated per optimizer step.", sweepable=True, card=True, within=AT_LEAST_ONE)
    precision: str = setting("auto", "auto (bf16 where the device runs it natively, else fp16 on a GPU, fp32 on CPU), fp32, bf16 or fp16.",
                             card=True, choices=PRECISIONS)  # fmt: skip
    seed: int = setting(42, "Seed of the data order, the head's initialisation and dropout.", sweepable=True, card=True)
    eval_every_steps: int = setting(0, "Evaluate on validation every N optimizer steps; 0 = at the end of each epoch.", within=NOT_NEGATIVE)
    metric_for_best: str = setting("macro_f1", "Validation metric that picks the best weights and drives early stopping: macro_f1,"
                                   " accuracy, weighted_f1, loss, ...; causal_lm: perplexity (taken when this is macro_f1), loss",
                                   card=True, choices=tuple(HIGHER_IS_BETTER))  # fmt: skip
    early_stopping_patience: int = setting(0, "Stop after this many evaluations without improvement; 0 = never.", sweepable=True,
                                           card=True, within=NOT_NEGATIVE)  # fmt: skip
    early_stopping_min_delta: float = setting(0.0, "Smallest change of the metric that counts as an improvement.")
    freeze_encoder_epochs: int = setting(0, "Train only the classification head for the first N epochs.", sweepable=True,
                                         card=True, within=NOT_NEGATIVE)  # fmt: skip
    layerwise_lr_decay: float = setting(1.0, "Multiply the learning rate by this for each layer further from the head (1 = off).",
                                        sweepable=True, card=True, within=(0, 1, "(]"))  # fmt: skip
    class_weights: str = setting("balanced", "balanced (inversely proportional to class frequency in train; macro-F1 weighs every"
                                 " class alike), or none.", sweepable=True, card=True, choices=CLASS_WEIGHTS,
                                 only_for=CLASSIFIERS)  # fmt: skip
    label_smoothing: float = setting(0.0, "Label smoothing of the cross-entropy loss, in [0, 1).", sweepable=True, card=True,
                                     within=(0, 1, "[)"), only_for=CLASSIFIERS)  # fmt: skip
    abstain_at_accuracy: float = setting(0.0, "Abstain below the confidence that keeps the validation accuracy of the answered rows at"
                                         " least this, answering as many as it can; 0: never abstain.", card=True, resume=False,
                                         within=(0, 1, "[)"), only_for=CLASSIFIERS)  # fmt: skip
    abstain_at_coverage: float = setting(0.0, "Or abstain below the confidence that answers this share of validation rows; 0: not"
                                         " used.", card=True, resume=False, within=(0, 1, "[)"), only_for=CLASSIFIERS)  # fmt: skip
    teacher_uri: str = setting("", "Distil from this model: train's or export's output, or a registered version's folder (local or"
                               " s3://); empty: none.", card=True, only_for=CLASSIFIERS)  # fmt: skip
    distill_temperature: float = setting(4.0, "Softens the teacher's and the student's logits in the distillation loss.",
                                         within=POSITIVE, only_for=CLASSIFIERS)  # fmt: skip
    distill_alpha: float = setting(0.7, "Weight of the teacher's soft targets in the loss; 1 - alpha weighs the gold labels.",
                                   within=(0, 1, "[]"), only_for=CLASSIFIERS)  # fmt: skip
    compile: bool = setting(False, "Compile the model with torch.compile (the sequence length marked dynamic); measured slower than"
                            " eager on CPU, so not a speed-up there (benchmarks/RESULTS.md, section 1).", resume=False)  # fmt: skip
    compile_backend: str = setting("inductor", "torch.compile backend (inductor; eager and aot_eager are for debugging).", resume=False)
    num_workers: int = setting(0, "DataLoader worker processes that pad batches in parallel; 0 pads in the training process.",
                               resume=False, within=NOT_NEGATIVE)  # fmt: skip
    pin_memory: bool = setting(True, "Pin batches in page-locked memory for faster copies to the GPU (ignored on CPU).", resume=False)
    group_by_length: bool = setting(True, "Batch rows of similar length together (less padding); the order stays seeded.", card=True)
    curriculum: str = setting("none", "length: short texts first, the pool widening to all rows over --curriculum_epochs (Platanios"
                              " et al. 2019); causal_lm: short contexts first, the block length growing (sequence-length warmup,"
                              " Li et al. 2022); rarity: rows of frequent tokens first, the pool widening alike; none: off.",
                              choices=CURRICULA)  # fmt: skip
    curriculum_epochs: int = setting(1, "Epochs over which the curriculum's pool (causal_lm length: the block) grows to all; plain"
                                     " epochs follow.", within=NOT_NEGATIVE)  # fmt: skip
    curriculum_start: float = setting(0.2, "Share of the rows (the easiest; causal_lm length: of the block) at the first step, in (0, 1].",
                                      within=(0, 1, "(]"))  # fmt: skip
    curriculum_pacing: str = setting(
        "root", "How the pool (or context) grows: root (fast at first, as in the paper) or linear.", choices=PACINGS
    )
    max_steps: int = setting(0, "Stop after this many optimizer steps; 0 = run all epochs.", within=NOT_NEGATIVE)
    stop_after_epochs: int = setting(0, "Pause at the end of this epoch: checkpoint, write the best weights so far and exit, the"
                                     " schedule still spanning --epochs, so that a later run with the same checkpoint resumes"
                                     " exactly (a successive-halving round); needs checkpoint_uri. 0: run to the end.",
                                     resume=False, within=NOT_NEGATIVE)  # fmt: skip
    checkpoint_every_steps: int = setting(0, "Checkpoint every N optimizer steps; SIGTERM checkpoints too. Both need checkpoint_uri.",
                                          resume=False, within=NOT_NEGATIVE)  # fmt: skip
    keep_checkpoints: int = setting(2, "How many step checkpoints to keep.", resume=False, within=AT_LEAST_ONE)
    logging_steps: int = setting(10, "Log the training loss (the mean over the last N steps) every N optimizer steps.", resume=False,
                                 within=AT_LEAST_ONE)  # fmt: skip
    max_train_samples: int = setting(0, "Train on this many rows of the training split (a sample drawn with --seed), for smoke"
                                     " tests; 0 = all.", within=NOT_NEGATIVE)  # fmt: skip
    lr_finder_steps: int = setting(0, "Run a learning-rate range test of this many steps first (Smith 2017) and train at its"
                                   " suggestion; 0: off.", within=NOT_NEGATIVE)  # fmt: skip

    def check(self) -> None:
        for spec in dataclasses.fields(self):
            check_value(spec.name, getattr(self, spec.name), spec.metadata)

    def resume_relevant(self) -> dict[str, Any]:
        """The settings a checkpoint must share with the run that resumes it."""
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self) if spec.metadata["resume"]}


def check_value(name: str, value: Any, metadata: Mapping[str, Any]) -> None:
    choices, within = metadata["choices"], metadata["within"]
    if choices is not None and value not in choices:
        raise UserError(f"--{name}: {value!r} is not one of {', '.join(choices)}")
    if within is None:
        return
    low, high, brackets = within
    too_low = value < low if brackets[0] == "[" else value <= low
    too_high = value > high if brackets[1] == "]" else value >= high
    if not (too_low or too_high):
        return
    if high == math.inf and brackets[0] == "[":
        raise UserError(f"--{name}: must {'be at least 1' if low == 1 else 'not be negative'}, got {value}")
    if high == math.inf:
        raise UserError(f"--{name}: must be positive, got {value}")
    raise UserError(f"--{name}: must be in {brackets[0]}{low:g}, {high:g}{brackets[1]}, got {value}")


SETTINGS = tuple(dataclasses.fields(TrainConfig))
SWEEPABLE = tuple(spec.name for spec in SETTINGS if spec.metadata["sweepable"])
PAUSE_FLAG = next(spec.name for spec in SETTINGS if spec.name == "stop_after_epochs")  # set by successive halving's rounds
ON_MODEL_CARD = tuple(spec.name for spec in SETTINGS if spec.metadata["card"])


def applies_to(spec: dataclasses.Field, kind: str) -> bool:
    """Whether the setting means anything for a model of `kind` (a classifier's model type, or CAUSAL_LM)."""
    return spec.metadata["only_for"] is None or kind in spec.metadata["only_for"]


TYPES = typing.get_type_hints(TrainConfig)


def as_parameters() -> list[inspect.Parameter]:
    """The settings as keyword-only parameters, for a stage function's signature."""
    return [
        inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=spec.default, annotation=TYPES[spec.name]) for spec in SETTINGS
    ]


def takes_settings(stage) -> None:
    """Make the settings flags of `stage`, whose last parameter is **settings: in its signature (what
    Fire and --help read), its annotations and its docstring's Args (what the pipeline parameters read);
    `executor_input` stays the last parameter."""
    signature = inspect.signature(stage)
    explicit = [parameter for parameter in signature.parameters.values() if parameter.kind is not inspect.Parameter.VAR_KEYWORD]
    last = [parameter for parameter in explicit if parameter.name == EXECUTOR_INPUT_FLAG]
    first = [parameter for parameter in explicit if parameter.name != EXECUTOR_INPUT_FLAG]
    stage.__signature__ = signature.replace(parameters=[*first, *as_parameters(), *last])
    hints = typing.get_type_hints(stage)
    stage.__annotations__ = {
        **{name: hints[name] for name in (parameter.name for parameter in explicit)},
        **TYPES,
        "return": hints["return"],
    }
    stage.__doc__ = with_args(stage.__doc__, {spec.name: spec.metadata["help"] for spec in SETTINGS})
