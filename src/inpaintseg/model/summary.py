"""Size and cost of a network: parameters, forward FLOPs, and a per-stage table (`inpaintseg model-info`)."""

from __future__ import annotations

import torch
from torch import nn

from inpaintseg.model.attention_unet import AttentionUNet


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _square_input(model: nn.Module, size: int | tuple[int, int]) -> torch.Tensor:
    height, width = (size, size) if isinstance(size, int) else size
    param = next(model.parameters())
    in_channels = getattr(model, "in_channels", 3)
    return torch.zeros(1, in_channels, height, width, dtype=param.dtype, device=param.device)


def model_flops(model: nn.Module, size: int | tuple[int, int] = 256) -> int:
    """Forward FLOPs for one image of `size` (int for square, or (H, W)).

    Counted with `torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per multiply-add of
    every convolution (transposed included) and matmul; element-wise ops (BatchNorm, ReLU, pooling,
    sigmoid, the gate's multiply) are not counted. Runs one forward pass in eval mode without grad.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(_square_input(model, size))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def stage_summary(model: AttentionUNet, size: int = 256) -> list[tuple[str, int, int]]:
    """(stage name, parameters, forward FLOPs per image) for the input stem (when there is one), each
    encoder/decoder stage and the head."""
    from torch.utils.flop_counter import FlopCounterMode

    stages: list[tuple[str, nn.Module]] = [("stem", model.stem)] if model.stem is not None else []
    stages += list(model.encoders.stages())
    stages += [(f"decoder{model.depth - 1 - i}", m) for i, m in enumerate(model.decoders)]
    stages.append(("head", model.head))
    flops = {name: 0 for name, _ in stages}
    counter = FlopCounterMode(display=False)

    def hook_pair(name: str):
        def pre(_module, _inputs):
            counter.__enter__()

        def post(_module, _inputs, _output):
            counter.__exit__(None, None, None)
            flops[name] += counter.get_total_flops()

        return pre, post

    handles = []
    for name, module in stages:
        pre, post = hook_pair(name)
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_square_input(model, size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return [(name, count_parameters(module), flops[name]) for name, module in stages]
