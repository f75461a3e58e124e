"""FineTuner's checkpoints: exact resume from the latest, a checkpoint and an exit for a retry on SIGTERM,
and the best weights back after training (evaluation saves them: tuner_evaluation.py)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from components.lib.errors import UserError
from components.lib.training import checkpoint
from components.lib.training.loop_parts import SIGTERM_EXIT_CODE, Progress, log
from components.lib.training.tuner_core import TunerCore


class Checkpointing(TunerCore):
    def resume(self) -> bool:
        if not self.checkpoint_uri:
            return False
        loaded = checkpoint.load_latest(self.checkpoint_uri, self.model, self.identity)
        if loaded is None:
            return False
        trainer_state, state = loaded
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        self.scaler.load_state_dict(trainer_state["scaler"])
        checkpoint.restore_rng_states(trainer_state["rng"])
        self.progress = Progress(**state["progress"])
        return True

    def stop_for_a_retry(self) -> None:
        """SIGTERM: checkpoint the step reached (when there is somewhere to put it) and exit for a retry."""
        if self.checkpoint_uri:
            self.save_checkpoint()
            message = "SIGTERM: checkpointed step %d; exiting with status %d so that the task is retried"
        else:
            message = "SIGTERM at step %d without --checkpoint_uri: nothing saved, a retry starts over; exiting with status %d"
        if self.dist.is_main:
            log.warning(message, self.progress.global_step, SIGTERM_EXIT_CODE)
        self.dist.close()
        raise SystemExit(SIGTERM_EXIT_CODE)

    def save_checkpoint(self) -> None:
        self.settle_losses()
        started = time.perf_counter()
        if self.dist.is_main:
            trainer_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
            }
            state = {"identity": self.identity, "progress": asdict(self.progress)}
            checkpoint.save(self.checkpoint_uri, self.progress.global_step, self.model, trainer_state, state, self.config.keep_checkpoints)
        self.dist.barrier()
        self.seconds_not_training += time.perf_counter() - started

    def load_best_weights(self) -> dict[str, Any]:
        if self.progress.best_step is None:
            raise UserError("no validation ran, so there are no best weights; check --epochs, --max_steps and --eval_every_steps")
        return checkpoint.load_best(self.best_uri, self.model)
