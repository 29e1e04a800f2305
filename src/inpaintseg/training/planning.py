"""Planning a training run on a wall-clock budget from measured rates on the real data.

`measure_train_rate` times real training steps (the real DataLoader's batches: decoding, augmentation
and collation included) at the precision training will use; `measure_eval_rate` does the same for
validation forward passes; `plan_epochs` turns both into the number of epochs whose cosine schedule
ends inside the budget. The demo calls these instead of timing random tensors, which left ~20% of its
budget unused.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from inpaintseg.precision import autocast_context, check_precision
from inpaintseg.timing import time_rounds


def _batches(loader: Iterable) -> Iterator:
    """The loader's batches, starting over when it is exhausted (a small dataset, few batches)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the data loader yielded no batches")


def _split(batch, device, channels_last: bool):
    """(images, masks) on `device` from a dataset dict {"image", "mask", ...} or an (x, y) pair."""
    import torch  # noqa: PLC0415

    images, masks = (batch["image"], batch["mask"]) if isinstance(batch, dict) else (batch[0], batch[1])
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks.to(device, non_blocking=True)


def _network_and_loss(model, loss_fn):
    """A private copy of the plain network (LightningModule/DDP/compile unwrapped) and the loss to use."""
    from inpaintseg.losses import BCEDiceLoss  # noqa: PLC0415
    from inpaintseg.model.io import unwrap_model  # noqa: PLC0415

    if loss_fn is None:
        loss_fn = getattr(model, "loss", None) if callable(getattr(model, "loss", None)) else BCEDiceLoss()
    return copy.deepcopy(unwrap_model(model)), loss_fn


def _rate(step, device, warmup: int, steps: int, max_seconds: float | None) -> float:
    """Images/s of step() -> images, timed by the one harness (`timing.time_rounds`; `max_seconds`: a slow or
    loaded machine measures fewer steps, keeping one warm-up step when asked for and one timed step)."""
    import torch  # noqa: PLC0415

    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    timings = time_rounds({"step": step}, warmup, steps, max_seconds=max_seconds, sync=sync)
    return sum(timings.values["step"]) / timings.total("step")


def measure_train_rate(model, dataloader: Iterable, precision: str = "32", device="cpu", warmup: int = 2,
                       steps: int = 5, channels_last: bool = False, loss_fn=None, lr: float = 1e-3,
                       max_seconds: float | None = None) -> float:
    """Training images/s: forward under `precision` autocast + loss backward + Adam step on the
    loader's real batches (loading time included, as in an epoch). `warmup` untimed steps first (the
    first steps pay worker start-up, allocation and kernel selection), then `steps` timed ones.

    `model` is a network or a LightningModule holding one as `.model` (its `.loss` is used unless
    `loss_fn` is given; default BCE-Dice). A copy is trained, so `model` itself is untouched.
    `max_seconds` caps the measurement (fewer steps, see `_rate`).
    """
    import torch  # noqa: PLC0415

    precision = check_precision(precision, allow_auto=False)
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    network, loss_fn = _network_and_loss(model, loss_fn)
    network = network.to(device).train()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    batches = _batches(dataloader)

    def step() -> int:
        images, masks = _split(next(batches), device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            loss = loss_fn(network(images), masks)
        loss.backward()
        optimizer.step()
        return int(images.shape[0])

    return _rate(step, device, warmup, steps, max_seconds)


def measure_eval_rate(model, dataloader: Iterable, precision: str = "32", device="cpu", warmup: int = 1,
                      steps: int = 3, channels_last: bool = False, max_seconds: float | None = None) -> float:
    """Validation images/s: forward passes in eval mode under `precision` autocast on real batches
    (`max_seconds`: see `measure_train_rate`)."""
    import torch  # noqa: PLC0415

    precision = check_precision(precision, allow_auto=False)
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    network, _ = _network_and_loss(model, loss_fn=lambda *a: None)
    network = network.to(device).eval()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    batches = _batches(dataloader)

    def step() -> int:
        images, _ = _split(next(batches), device, channels_last)
        with torch.inference_mode(), autocast_context(device, precision):
            network(images)
        return int(images.shape[0])

    return _rate(step, device, warmup, steps, max_seconds)


@dataclass(frozen=True)
class EpochPlan:
    epochs: int
    seconds_per_epoch: float
    budget_seconds: float

    @property
    def planned_seconds(self) -> float:
        return self.epochs * self.seconds_per_epoch

    @property
    def used_fraction(self) -> float:
        """Share of the budget the planned epochs fill (can exceed 1 when even one epoch does not fit)."""
        return self.planned_seconds / self.budget_seconds

    def describe(self) -> str:
        return (f"{self.epochs} epochs x {self.seconds_per_epoch:.1f} s = {self.planned_seconds:.0f} s of the "
                f"{self.budget_seconds:.0f} s budget ({100 * self.used_fraction:.0f}%)")


def plan_epochs(budget_seconds: float, n_train: int, train_rate: float, n_val: int = 0,
                eval_rate: float | None = None, reserve_seconds: float = 0.0,
                epoch_overhead_seconds: float = 0.0) -> EpochPlan:
    """Epochs whose training (n_train / train_rate) plus validation (n_val / eval_rate) plus a fixed
    per-epoch overhead (checkpoints, logging) fit in `budget_seconds` minus `reserve_seconds` (fixed
    costs such as start-up and calibration), so the cosine schedule completes instead of being cut off.
    At least one epoch."""
    if not budget_seconds > 0 or not train_rate > 0 or n_train < 1:
        raise ValueError(f"need a positive budget, rate and image count, got budget={budget_seconds}, "
                         f"train_rate={train_rate}, n_train={n_train}")
    per_epoch = n_train / train_rate
    if n_val > 0:
        if eval_rate is None or not eval_rate > 0:
            raise ValueError(f"n_val={n_val} needs a positive eval_rate, got {eval_rate}")
        per_epoch += n_val / eval_rate
    per_epoch += max(0.0, float(epoch_overhead_seconds))
    epochs = max(1, math.floor((budget_seconds - reserve_seconds) / per_epoch))
    return EpochPlan(epochs, per_epoch, float(budget_seconds))
