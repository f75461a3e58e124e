"""The names of the stages' outputs: the artifacts and output parameters that the components write
(StageResult) and pipelines/ declares and wires (pipelines/stages.py, pipelines/pipeline.py, task.outputs[...]).
Components cannot import pipelines/, so the names live here, once; this module imports nothing.

An artifact's name is also its folder in a kfp.local run folder, <run>/<task>/<output>/, where
pipelines/run_summary.py reads the reports. evaluate's verdict, PASSES_OUTPUT, is in components/lib/quality_gate.py.
"""

# Artifacts.
DATASET_ARTIFACT = "dataset"
DATA_ARTIFACT = "data"
TOKENIZED_ARTIFACT = "tokenized"
MODEL_ARTIFACT = "model"
EVALUATION_ARTIFACT = "evaluation"
REPORT_ARTIFACT = "report"
ONNX_ARTIFACT = "onnx"
KFOLD_ARTIFACT = "kfold"
TUNING_ARTIFACT = "tuning"
ROUND_ARTIFACT = "round_results"
REGISTRATION_ARTIFACT = "registration"
DEPLOYMENT_ARTIFACT = "deployment"
METRICS_ARTIFACT = "metrics"
CONFUSION_MATRIX_ARTIFACT = "confusion_matrix"

# Output parameters.
TOKENIZED_URI_OUTPUT = "tokenized_uri"  # tokenize: its tokenized artifact's URI
MODEL_URI_OUTPUT = "model_uri"  # train, select_best: the (best) model's URI
BEST_VALIDATION_VALUE_OUTPUT = "best_validation_value"  # train
EVALUATION_URI_OUTPUT = "evaluation_uri"  # evaluate: its evaluation artifact's URI
BEST_VALUE_OUTPUT = "best_value"  # select_best
BEST_TRIAL_OUTPUT = "best_trial"  # select_best
SURVIVORS_OUTPUT = "survivors"  # select_survivors: the next round's trial items
REGISTERED_OUTPUT = "registered"  # register
VERSION_OUTPUT = "version"  # register
URL_OUTPUT = "url"  # deploy
