"""Learning-rate schedules of `lr_schedule` (TrainConfig): the seed's per-epoch cosine, or per-step warm-up
schedules that reach a useful model in fewer steps on small budgets (benchmarks/learning_curve.py)."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, total: int, warmup: int) -> float:
    """lr multiplier at optimiser step `step` (0-based): linear from 1/(warmup+1) to 1 over `warmup` steps,
    then a cosine from 1 to 0 at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, epochs: int, total_steps: int,
                    warmup_fraction: float) -> dict:
    """Lightning's `configure_optimizers` answer for `schedule`: "cosine" (CosineAnnealingLR over `epochs`,
    stepped per epoch), "warmup-cosine" or "onecycle" (per optimiser step over `total_steps`)."""
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    total = max(int(total_steps), 1)
    warmup = int(round(warmup_fraction * total))
    if schedule == "warmup-cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, total, warmup))
    elif schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total + 1,
            pct_start=max(warmup_fraction, 1.0 / total), cycle_momentum=False)
    else:
        raise ValueError(f"unknown lr_schedule {schedule!r}; expected cosine, warmup-cosine or onecycle")
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
