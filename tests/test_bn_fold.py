"""Issue 23: BatchNorm folded into the convolutions at inference (`inference.engines.fold_batchnorm`,
`TorchEngine(fold_bn=True)`, the predictor's default): same probabilities within 1e-5, the model passed in
left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_ARCH
from torch import nn

from inpaintseg.data.input_spec import input_section
from inpaintseg.inference import Predictor
from inpaintseg.inference.engines import fold_batchnorm
from inpaintseg.model import build_model

TOLERANCE = 1e-5   # largest |probability difference| folded vs unfolded, fp32


def randomised_model(arch=TINY_ARCH, seed=0):
    """A tiny model whose BatchNorm layers have non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    model = build_model(arch)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n) * 0.5)
            m.running_var.copy_(torch.rand(n) * 2 + 0.2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.3, 0.3)
    return model.eval()


def test_one_conv_and_batchnorm_fold_to_the_numbers_worked_out_by_hand():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    bn = nn.BatchNorm2d(1)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0 - bn.eps)   # sqrt(var + eps) = 2
    folded, count = fold_batchnorm(nn.Sequential(conv, bn, nn.ReLU()))
    assert count == 1 and isinstance(folded[1], nn.Identity) and isinstance(folded[2], nn.ReLU)
    # w' = 2 * 3 / 2 = 3, b' = (0 - 1) * 3 / 2 + 0.5 = -1
    torch.testing.assert_close(folded[0].weight, torch.full((1, 1, 1, 1), 3.0))
    torch.testing.assert_close(folded[0].bias, torch.tensor([-1.0]))


def test_folded_model_gives_the_same_logits_and_leaves_the_original_alone():
    model = randomised_model().train()   # e.g. still training: the copy is folded, the model is not touched
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, count = fold_batchnorm(model)
    assert count == 10   # depth 2: 3 encoder + 2 decoder ConvBlocks, 2 BatchNorms each
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) and not folded.training
    assert model.training and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 10
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    x = torch.randn(3, 3, 20, 28)
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(x))
        got = torch.sigmoid(folded(x))
    assert (got - expected).abs().max().item() <= TOLERANCE
    assert not torch.equal(got, torch.sigmoid(build_model(TINY_ARCH).eval()(x)))   # the statistics matter


@pytest.mark.parametrize("mode, size", [("resize", 32), ("crop", 16)])
def test_predictor_probability_maps_folded_vs_unfolded_within_tolerance(mode, size):
    model = randomised_model(seed=1)
    config = {"input": input_section(mode, size)}
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, np.uint8) for shape in ((32, 32, 3), (21, 45, 3), (50, 17, 3))]
    plain = Predictor(model, config, tta="flip", fold_bn=False)
    folded = Predictor(model, config, tta="flip")   # the default folds
    assert plain.engine.folded == 0 and any(isinstance(m, nn.BatchNorm2d) for m in plain.model.modules())
    assert folded.engine.folded == 10 and "10 BatchNorm folded" in folded.engine.describe()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.model.modules())
    for a, b in zip(plain.predict_proba_batch(images), folded.predict_proba_batch(images)):
        assert a.shape == b.shape and np.abs(a - b).max() <= TOLERANCE


def test_a_group_norm_model_has_nothing_to_fold():
    model = randomised_model({**TINY_ARCH, "norm": "group"})
    folded, count = fold_batchnorm(model)
    assert count == 0 and folded is model   # nothing to fold: no copy
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))
