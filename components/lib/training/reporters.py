"""Where training curves go besides training_history.json: TensorBoard, MLflow, Weights & Biases.

MLflow and W&B are optional packages (`pip install -e '.[tracking]'`), configured by their own
environment variables (`MLFLOW_TRACKING_URI`, `MLFLOW_EXPERIMENT_NAME`, `WANDB_API_KEY`,
`WANDB_PROJECT`, `WANDB_MODE`); asking for one that is not installed is a user error. Credentials
are never logged or written here. evaluate and register continue the MLflow run
(components/lib/reporting/tracking.py).
"""

from __future__ import annotations

from pathlib import Path

from components.lib.errors import UserError
from components.lib.reporting.tracking import MLFLOW_RUN_KEY
from components.lib.training.trainjob_status import TrainJobStatus

REPORTERS = ("tensorboard", "mlflow", "wandb")


def parse_report_to(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip() and name.strip().lower() != "none"]
    unknown = [name for name in names if name not in REPORTERS]
    if unknown:
        raise UserError(f"--report_to: unknown reporter {unknown[0]!r}; choose from {', '.join(REPORTERS)} or none")
    return names


class Reporters:
    def __init__(self, names: list[str], log_dir: Path, run_config: dict, trainjob_status: TrainJobStatus | None = None) -> None:
        self.trainjob_status = trainjob_status  # progress for a Kubeflow Trainer TrainJob's status, where it asks for it
        self.sinks = []
        self.links: dict[str, str] = {}  # where the run can be found again: train_summary.json's "tracking"
        for name in names:
            try:
                self.sinks.append(self.open(name, log_dir, run_config))
            except ImportError:
                package = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}[name]
                raise UserError(f"--report_to {name}: the {package} package is not installed; pip install {package} or drop it") from None

    def open(self, name: str, log_dir: Path, run_config: dict):
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(log_dir))

            def scalars(step: int, values: dict[str, float]) -> None:
                for key, value in values.items():
                    writer.add_scalar(key, value, step)

            return (scalars, writer.close)
        if name == "mlflow":
            import mlflow

            active = mlflow.start_run()
            self.links[MLFLOW_RUN_KEY] = active.info.run_id
            mlflow.log_params({key: str(value)[:250] for key, value in run_config.items()})
            return (lambda step, values: mlflow.log_metrics(values, step=step), mlflow.end_run)
        import wandb

        run = wandb.init(config=run_config)
        self.links["wandb_run_id"] = run.id
        return (lambda step, values: run.log(values, step=step), run.finish)

    def plan(self, total_steps: int, first_step: int) -> None:
        """Training is about to run steps first_step + 1 to total_steps (more than one at a resume)."""
        if self.trainjob_status:
            self.trainjob_status.plan(total_steps, first_step)

    def log(self, step: int, values: dict[str, float]) -> None:
        for log, _ in self.sinks:
            log(step, values)
        if self.trainjob_status:
            self.trainjob_status.update(step, values)

    def close(self) -> None:
        for _, close in self.sinks:
            close()
        if self.trainjob_status:
            self.trainjob_status.close()
