"""Budget planning from measured rates on real batches (the demo's planner)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from inpaintseg.data import InpaintDataset
from inpaintseg.model import AttentionUNet
from inpaintseg.training.planning import measure_eval_rate, measure_train_rate, plan_epochs
from inpaintseg.data.transforms import train_transform


class CountingLoader:
    """Wraps a DataLoader; counts the batches handed out."""

    def __init__(self, loader):
        self.loader, self.batches = loader, 0

    def __iter__(self):
        for batch in self.loader:
            self.batches += 1
            yield batch


@pytest.fixture
def loader(make_dataset):
    root = make_dataset(n_train=6, n_test=0, size=32, n_empty=1)
    dataset = InpaintDataset(root / "train" / "images", root / "train" / "masks",
                             transform=train_transform(32, "resize", seed=0))
    return CountingLoader(DataLoader(dataset, batch_size=4, shuffle=True))  # batches of 4 and 2


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_measure_train_rate_uses_real_batches_and_leaves_the_model_alone(loader, precision):
    torch.manual_seed(0)
    model = AttentionUNet(base_channels=4, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rate = measure_train_rate(model, loader, precision, warmup=1, steps=3)
    assert rate > 0
    assert loader.batches == 4  # 1 warm-up + 3 timed, cycling through the 2-batch loader
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_time_cap_keeps_one_warm_up_and_one_timed_step(loader):
    # max_seconds=0 is always exceeded: the first warm-up step ends warm-up, the first timed step ends timing.
    model = AttentionUNet(base_channels=4, depth=2)
    assert measure_train_rate(model, loader, "32", warmup=3, steps=5, max_seconds=0.0) > 0
    assert loader.batches == 2
    assert measure_eval_rate(model, loader, "32", warmup=0, steps=4, max_seconds=0.0) > 0
    assert loader.batches == 3


def test_measure_eval_rate(loader):
    rate = measure_eval_rate(AttentionUNet(base_channels=4, depth=2), loader, "bf16-mixed", warmup=0,
                             steps=2, channels_last=True)
    assert rate > 0 and loader.batches == 2


def test_empty_loader_and_bad_arguments_are_refused():
    model = AttentionUNet(base_channels=4, depth=2)
    with pytest.raises(ValueError, match="no batches"):
        measure_train_rate(model, [], "32", warmup=0, steps=1)
    with pytest.raises(ValueError, match="steps >= 1"):
        measure_train_rate(model, [], "32", steps=0)


def test_plan_epochs_by_hand():
    # 360 train images at 12 img/s = 30 s, 40 val images at 40 img/s = 1 s -> 31 s per epoch;
    # (420 s - 20 s reserved) / 31 s = 12.9 -> 12 epochs = 372 s = 88.6% of 420 s.
    plan = plan_epochs(420.0, 360, 12.0, n_val=40, eval_rate=40.0, reserve_seconds=20.0)
    assert (plan.epochs, plan.seconds_per_epoch) == (12, 31.0)
    assert plan.planned_seconds == 372.0 and plan.used_fraction == pytest.approx(372 / 420)
    assert "12 epochs" in plan.describe()
    assert plan_epochs(1.0, 360, 12.0).epochs == 1  # never zero epochs
    with pytest.raises(ValueError, match="eval_rate"):
        plan_epochs(420.0, 360, 12.0, n_val=40)
    with pytest.raises(ValueError, match="positive"):
        plan_epochs(420.0, 360, 0.0)
