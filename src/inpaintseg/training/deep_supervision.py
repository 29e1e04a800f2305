"""Deep supervision for training only: auxiliary 1x1 logit heads on the decoder levels (as in nnU-Net / UNet++).

The heads live in the LightningModule, not in the network, so the exported model and its architecture are
unchanged. Forward hooks on the network's decoder stages (all but the last, whose output feeds the real head)
collect their feature maps during the normal forward pass; each head's logits are up-sampled (bilinear) to the
mask size and scored with the same loss. Total = main loss + weight x mean of the auxiliary losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DeepSupervision(nn.Module):
    """Auxiliary heads on `network.decoders[:-1]` (an AttentionUNet's decoder stages, deepest first)."""

    def __init__(self, network: nn.Module, weight: float) -> None:
        super().__init__()
        from inpaintseg.model.io import unwrap_model

        decoders = getattr(unwrap_model(network), "decoders", None)
        if decoders is None or len(decoders) < 2:
            raise ValueError("deep_supervision needs an AttentionUNet with at least 2 decoder stages (depth >= 2)")
        self.weight = float(weight)
        self.heads = nn.ModuleList(nn.Conv2d(stage.up.out_channels, 1, 1) for stage in decoders[:-1])
        self._features: list[torch.Tensor] = []
        for stage in decoders[:-1]:
            stage.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        if self.training:
            self._features.append(output[0] if isinstance(output, tuple) else output)

    def clear(self) -> None:
        self._features = []

    def loss(self, loss_fn: nn.Module, target: torch.Tensor) -> torch.Tensor:
        """weight x mean auxiliary loss over the features collected since `clear` (then cleared)."""
        features, self._features = self._features, []
        if not features:
            return target.new_zeros(())
        losses = []
        for head, feature in zip(self.heads, features):
            logits = F.interpolate(head(feature), size=target.shape[-2:], mode="bilinear", align_corners=False)
            losses.append(loss_fn(logits, target))
        return self.weight * torch.stack(losses).mean()
