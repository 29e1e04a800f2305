"""Convergence options (issue 23): lr schedules, small-mask loss weights, deep supervision, curriculum sampling;
values worked out by hand, and one tiny end-to-end run from the CLI with all of them on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from inpaintseg.config import TrainConfig
from inpaintseg.data.curriculum import CurriculumSampler, curriculum_weights, difficulty, read_difficulties
from inpaintseg.errors import ConfigError, DataError
from inpaintseg.losses import BCEDiceLoss, small_mask_weights
from inpaintseg.model import build_model
from inpaintseg.training.deep_supervision import DeepSupervision
from inpaintseg.training.module import SegmentationModule
from inpaintseg.training.schedules import build_scheduler, warmup_cosine_factor


def test_warmup_cosine_factor_by_hand():
    # total 10 steps, 2 warm-up steps: 1/3, 2/3, then cosine from 1 at step 2 to 0 at step 10.
    assert [warmup_cosine_factor(s, 10, 2) for s in (0, 1, 2)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert warmup_cosine_factor(6, 10, 2) == pytest.approx(0.5)   # half-way through the cosine
    assert warmup_cosine_factor(10, 10, 2) == pytest.approx(0.0)


@pytest.mark.parametrize("schedule", ["warmup-cosine", "onecycle"])
def test_step_schedules_warm_up_then_decay(schedule):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=0.1)
    answer = build_scheduler(optimizer, schedule, epochs=1, total_steps=20, warmup_fraction=0.2)
    assert answer["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        answer["lr_scheduler"]["scheduler"].step()
    peak = int(np.argmax(lrs))
    assert 2 <= peak <= 5 and lrs[0] < lrs[peak] and lrs[-1] < 0.1 * lrs[peak]
    assert max(lrs) == pytest.approx(0.1, rel=0.02)


def test_small_mask_weights_by_hand():
    # coverages 0.25, 0.01 (clipped to 0.04), empty, 1.0 at power 1: raw 1, 6.25, 1, 0.25 -> mean 2.125.
    target = torch.zeros(4, 1, 10, 10)
    target[0, 0, :5, :5] = 1
    target[1, 0, 0, 0] = 1
    target[3] = 1
    weights = small_mask_weights(target, 1.0)
    assert weights.tolist() == pytest.approx([1 / 2.125, 6.25 / 2.125, 1 / 2.125, 0.25 / 2.125])


def test_weighted_loss_equals_plain_loss_when_masks_are_alike():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    target = torch.zeros(3, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1  # equal coverage: equal weights, per-image means = pooled mean
    plain = BCEDiceLoss()(logits, target)
    assert BCEDiceLoss(small_mask_power=1.0)(logits, target) == pytest.approx(float(plain), rel=1e-5)
    target[0] = 0
    target[0, :, 0, 0] = 1  # image 0's mask is tiny now: it weighs more, so the loss moves
    assert float(BCEDiceLoss(small_mask_power=1.0)(logits, target)) != pytest.approx(
        float(BCEDiceLoss()(logits, target)), rel=1e-3)


def test_deep_supervision_adds_training_only_heads():
    torch.manual_seed(0)
    network = build_model({"name": "AttentionUNet", "base_channels": 4, "depth": 3})
    names = set(network.state_dict())
    aux = DeepSupervision(network, 0.5)
    assert len(aux.heads) == 2   # decoder stages but the last
    x, target = torch.randn(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    aux.train()
    network(x)
    extra = aux.loss(BCEDiceLoss(), target)
    assert extra > 0 and aux.loss(BCEDiceLoss(), target) == 0  # features are used once
    assert set(network.state_dict()) == names  # the exported network is unchanged
    module = SegmentationModule(network, BCEDiceLoss(), deep_supervision=0.5)
    assert {n.split(".")[0] for n, _ in module.named_parameters()} == {"model", "aux"}


def test_curriculum_difficulty_and_weights_by_hand():
    assert difficulty({"degradations": [], "post_fill": [], "pre_jpeg": None, "hard_negative": None}) == 0
    assert difficulty({"degradations": [{"op": "jpeg"}], "post_fill": [{"op": "blur"}], "pre_jpeg": 80}) == 3
    d = np.array([0.0, 2.0])
    # epoch 0 of 2: weights 1 and e^(-1.5 x 1 x 2); epoch 1: e^(-1.5 x 0.5 x 2); epoch 2: uniform.
    assert curriculum_weights(d, 0, 2) == pytest.approx(np.array([1, math.exp(-3)]) / (1 + math.exp(-3)))
    assert curriculum_weights(d, 1, 2) == pytest.approx(np.array([1, math.exp(-1.5)]) / (1 + math.exp(-1.5)))
    assert curriculum_weights(d, 2, 2) == pytest.approx([0.5, 0.5])


def test_curriculum_sampler_favours_easy_images_then_shuffles():
    sampler = CurriculumSampler(np.array([0.0] * 10 + [3.0] * 90), epochs=3, seed=0)
    first = list(sampler)
    assert len(first) == 100 and sum(i < 10 for i in first) > 60  # 10 easy images: ~ 90% of draws
    sampler.set_epoch(3)
    assert sorted(sampler) == list(range(100))


def test_curriculum_needs_meta_json(tmp_path):
    with pytest.raises(DataError, match="meta.json"):
        read_difficulties(tmp_path / "meta.json", ["a"])
    (tmp_path / "meta.json").write_text(json.dumps({"images": {"a": {"degradations": []}}}))
    with pytest.raises(DataError, match="no record for 1"):
        read_difficulties(tmp_path / "meta.json", ["a", "b"])


def test_option_conflicts_are_config_errors():
    with pytest.raises(ConfigError, match="small_mask_power"):
        TrainConfig.from_dict({"small_mask_power": 1.0, "loss": "lovasz"})
    with pytest.raises(ConfigError, match="deep_supervision"):
        TrainConfig.from_dict({"deep_supervision": 0.5, "compile": True})
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig.from_dict({"lr_schedule": "linear"})


@pytest.mark.slow
def test_all_options_train_from_the_cli(make_dataset, tmp_path):
    from inpaintseg import cli

    data = make_dataset(n_train=8)
    stems = [p.stem for p in (data / "train" / "images").iterdir()]
    meta = {s: {"degradations": [] if i % 2 else [{"op": "jpeg"}]} for i, s in enumerate(stems)}
    (data / "train" / "meta.json").write_text(json.dumps({"images": meta}))
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "2",
                     "--base-channels", "4", "--depth", "2", "--img-size", "32", "--num-workers", "0", "--quiet",
                     "--no-calibrate", "--lr-schedule", "onecycle", "--deep-supervision", "0.5",
                     "--small-mask-power", "0.5", "--curriculum-epochs", "1"])
    assert code == 0
    saved = (out / "config.yaml").read_text()
    assert "lr_schedule: onecycle" in saved and "curriculum_epochs: 1" in saved
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["data"]["curriculum"] == {"epochs": 1, "n_easy": 3}


@pytest.mark.slow
def test_compiled_model_matches_eager_within_tolerance():
    # `--compile` (torch.compile, inductor on CPU) must not change what the network computes: same logits and
    # gradients as eager mode up to float32 rounding (inductor fuses and reorders sums).
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler")
    torch.manual_seed(0)
    eager = build_model({"name": "AttentionUNet", "base_channels": 4, "depth": 2})
    compiled_copy = build_model({"name": "AttentionUNet", "base_channels": 4, "depth": 2})
    compiled_copy.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_copy)
    x = torch.randn(2, 3, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.7).float()
    outputs = []
    for net in (eager, compiled):
        net.train()
        logits = net(x)
        BCEDiceLoss()(logits, target).backward()
        grads = [p.grad.clone() for p in (compiled_copy if net is compiled else eager).parameters()]
        outputs.append((logits.detach(), grads))
    torch.testing.assert_close(outputs[1][0], outputs[0][0], rtol=1e-4, atol=1e-4)
    for g_compiled, g_eager in zip(outputs[1][1], outputs[0][1]):
        torch.testing.assert_close(g_compiled, g_eager, rtol=1e-3, atol=1e-4)
