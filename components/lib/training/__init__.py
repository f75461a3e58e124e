"""The training loop and what it needs: optimizer and schedules, checkpoints, DDP, metric reporters."""
