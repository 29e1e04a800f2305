"""The LightningModule: a segmentation network passed in, trained with a loss passed in.

Structure as in Lightning's backbone_image_classifier example: the network is built outside and passed
INTO `SegmentationModule(model, loss, lr, epochs, ...)`. Validation metrics (threshold 0.5): `val_dice`
and `val_iou` are means over images of per-image Dice/IoU (both empty scores 1, the competition's rule);
`val_f1` is the pixel F1 pooled over all validation pixels.
"""

from __future__ import annotations

import lightning as L
import torch

from inpaintseg.metrics import DEFAULT_THRESHOLD


class NonFiniteLossError(RuntimeError):
    """Raised inside training when the loss is NaN/Inf; `train` turns it into a user-facing error."""

    def __init__(self, epoch: int, batch: int, value: float) -> None:
        super().__init__(f"loss is {value} at epoch {epoch}, batch {batch}")
        self.epoch, self.batch, self.value = epoch, batch, value


# ----------------------------------------------------------------------------------------------
# LightningModule


class SegmentationModule(L.LightningModule):
    """Trains a segmentation network that maps (B, 3, H, W) images to (B, 1, H, W) logits.

    `model` and `loss` are passed in (not built here); `architecture` is the dict that rebuilds the
    model (`inpaintseg.model.build_model`), stored in the checkpoint's hyperparameters. Adam with
    CosineAnnealingLR over `epochs` epochs (the seed's schedule).
    """

    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, lr: float = 1e-3, epochs: int = 50,
                 weight_decay: float = 0.0, architecture: dict | None = None,
                 channels_last: bool = False, val_threshold: float = DEFAULT_THRESHOLD,
                 encoder_lr_mult: float = 1.0, lr_schedule: str = "cosine", warmup_fraction: float = 0.05,
                 deep_supervision: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "loss"])
        self.model = model
        self.loss = loss
        self.aux = None  # training-only decoder heads (training.deep_supervision); not part of the export
        if deep_supervision:
            from inpaintseg.training.deep_supervision import DeepSupervision

            self.aux = DeepSupervision(model, deep_supervision)
        self.last_val_epoch = -1  # the epoch whose validation metrics are in callback_metrics
        self._val_sums: list[float] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Shape: (B, 3, H, W) -> logits (B, 1, H, W)."""
        return self.model(images)

    def _inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["image"]
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, batch["mask"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, masks = self._inputs(batch)
        if self.aux is not None:
            self.aux.clear()
        loss = self.loss(self.model(images), masks)
        if self.aux is not None:
            loss = loss + self.aux.loss(self.loss, masks)
        self._stop_if_not_finite(loss, batch_idx)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=images.shape[0], sync_dist=True)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()).item())
        if self.trainer.world_size > 1:  # stop every rank together, or the others hang in all-reduce
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(self.current_epoch + 1, batch_idx, float(loss.detach().float().item()))

    def on_validation_epoch_start(self) -> None:
        # loss*n, n, sum of per-image dice, sum of per-image IoU, pooled tp, fp, fn
        self._val_sums = [0.0] * 7

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from inpaintseg.metrics import confusion_counts, dice_from_counts, iou_from_counts

        images, masks = self._inputs(batch)
        logits = self.model(images)
        loss = self.loss(logits, masks)
        pred = torch.sigmoid(logits.float()) >= self.hparams.val_threshold
        counts = confusion_counts(pred, masks >= 0.5).cpu().numpy()
        tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
        n = images.shape[0]
        for i, value in enumerate((float(loss) * n, n, dice_from_counts(tp, fp, fn).sum(),
                                   iou_from_counts(tp, fp, fn).sum(), tp.sum(), fp.sum(), fn.sum())):
            self._val_sums[i] += float(value)

    def on_validation_epoch_end(self) -> None:
        from inpaintseg.metrics import precision_recall_f1

        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        sums = torch.tensor(self._val_sums, dtype=dtype, device=self.device)
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss_sum, n, dice_sum, iou_sum, tp, fp, fn = (float(v) for v in sums.cpu())
        if n == 0:
            return
        f1 = float(precision_recall_f1(tp, fp, fn)[2])
        metrics = {"val_loss": loss_sum / n, "val_dice": dice_sum / n, "val_iou": iou_sum / n, "val_f1": f1}
        # Already summed over ranks; sync_dist then averages equal values (and silences Lightning).
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.last_val_epoch = self.current_epoch

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then the network's weight constraints (the Bayar stem's `constrain_`), so the
        constraint holds after every step, in every epoch and in the exported weights."""
        from inpaintseg.model.io import unwrap_model

        super().optimizer_step(*args, **kwargs)
        constrain = getattr(unwrap_model(self.model), "constrain_", None)
        if callable(constrain):
            constrain()

    def configure_optimizers(self):
        from inpaintseg.training.schedules import build_scheduler

        groups = self.parameter_groups()
        if self.aux is not None:
            groups[0]["params"] = groups[0]["params"] + list(self.aux.parameters())
        optimizer = torch.optim.Adam(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = self.hparams.get("lr_schedule", "cosine")
        steps = int(self.trainer.estimated_stepping_batches) if schedule != "cosine" else 0
        return build_scheduler(optimizer, schedule, self.hparams.epochs, steps,
                               self.hparams.get("warmup_fraction", 0.05))

    def parameter_groups(self) -> list[dict]:
        """One group at lr; with encoder_lr_mult != 1, the encoder's parameters (`encoder_parameters` of
        an AttentionUNet) in a second group at lr x encoder_lr_mult (the cosine schedule scales both)."""
        from inpaintseg.training.finetune import encoder_parameters

        mult = self.hparams.get("encoder_lr_mult", 1.0)
        encoder = encoder_parameters(self.model) if mult != 1.0 else []
        if not encoder:
            return [{"params": list(self.model.parameters())}]
        ids = {id(p) for p in encoder}
        rest = [p for p in self.model.parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": encoder, "lr": self.hparams.lr * mult}]
