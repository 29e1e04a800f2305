"""`InpaintDataModule`: training data from ``data_dir/train/{images,masks}``, split, loaders.

The class is created lazily (`datamodule_class()`): importing lightning takes ~5 s, which commands that only
read data (check-data) should not pay. `inpaintseg.data.InpaintDataModule` resolves it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from inpaintseg.data.dataset import InpaintDataset, seed_worker, select_stems
from inpaintseg.data.pairing import pair_files
from inpaintseg.data.split import mask_has_pixels, split_stems
from inpaintseg.errors import ConfigError, name_list


def training_folder(data_dir) -> Path:
    """The folder holding the training ``images/`` and ``masks/``: ``DATA/train`` for a dataset root, or the
    folder itself when it is that split folder (``train --data DATA/train``, as check-data accepts)."""
    data_dir = Path(data_dir)
    if not (data_dir / "train" / "images").is_dir() and (data_dir / "images").is_dir():
        return data_dir
    return data_dir / "train"


def dataset_root(data_dir) -> Path:
    """The dataset root (holding ``train/`` and maybe ``test/``) of a ``--data`` value."""
    folder = training_folder(data_dir)
    return folder.parent if folder == Path(data_dir) else Path(data_dir)


class _DataModuleMethods:
    """Training data from ``data_dir/train/{images,masks}``, split into train and validation.

    `split` (``{"train": [...], "val": [...]}``) reuses a saved split; otherwise `setup` reads every mask
    once to stratify a new seeded split. `summary` holds counts for the model's config. `degradations`
    (keyword arguments of `transforms.degradation_steps`) degrade training images; `paired_batches` puts
    each training image and its original (``train/originals/``) in the same batch (`data.paired`), with
    ``batch_size // 2`` items per batch so a batch still holds about `batch_size` images.
    The public class is `InpaintDataModule` (these methods on a `lightning.LightningDataModule`).
    """

    def __init__(self, data_dir, img_size: int = 256, input_mode: str = "resize", batch_size: int = 16,
                 val_fraction: float = 0.1, seed: int = 0, num_workers: int = 0,
                 split: dict | None = None, degradations: dict | None = None, paired_batches: bool = False,
                 curriculum_epochs: int = 0):
        from inpaintseg.data.transforms import check_input_mode

        super().__init__()
        check_input_mode(input_mode, img_size)
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size {batch_size!r} must be at least 1.")
        if int(num_workers) < 0:
            raise ConfigError(f"num_workers {num_workers!r} must be 0 or more.")
        self.data_dir = Path(data_dir)
        self.img_size = int(img_size)
        self.input_mode = input_mode
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.degradations = dict(degradations or {})
        self.paired_batches = bool(paired_batches)
        self.curriculum_epochs = int(curriculum_epochs)
        self.sampler = None  # data.curriculum.CurriculumSampler with curriculum_epochs
        self._given_split = self._validated_split(split) if split is not None else None
        self._split: dict[str, list[str]] | None = None
        self.summary: dict = {}
        self.train_set: InpaintDataset | None = None
        self.val_set: InpaintDataset | None = None

    @staticmethod
    def _validated_split(split: dict) -> dict[str, list[str]]:
        if not isinstance(split, dict) or not all(
                isinstance(split.get(k), list) and all(isinstance(s, str) for s in split[k])
                for k in ("train", "val")):
            raise ConfigError(
                "a saved split must be {\"train\": [stems...], \"val\": [stems...]}; got "
                f"{type(split).__name__} with keys {sorted(split) if isinstance(split, dict) else '-'}. "
                "Fix or delete split.json."
            )
        overlap = sorted(set(split["train"]) & set(split["val"]))
        if overlap or not split["train"] or not split["val"]:
            raise ConfigError(
                "a saved split needs non-empty, disjoint train and val lists; "
                f"{len(split['train'])} train, {len(split['val'])} val, overlap: "
                f"{name_list(overlap) or 'none'}. Fix or delete split.json."
            )
        return {"train": list(split["train"]), "val": list(split["val"])}

    @property
    def images_dir(self) -> Path:
        return training_folder(self.data_dir) / "images"

    @property
    def masks_dir(self) -> Path:
        return training_folder(self.data_dir) / "masks"

    @property
    def split(self) -> dict[str, list[str]]:
        if self._split is None:
            raise RuntimeError("InpaintDataModule.split is known after setup()")
        return {"train": list(self._split["train"]), "val": list(self._split["val"])}

    def setup(self, stage: str | None = None) -> None:
        from inpaintseg.data.transforms import eval_transform, train_transform

        if self.train_set is not None:
            return
        samples = pair_files(self.images_dir, self.masks_dir)
        if self._given_split is not None:
            select_stems(samples, self._given_split["train"] + self._given_split["val"],
                         str(self.images_dir))
            self._split = self._given_split
            flags = None
        else:
            flags = mask_has_pixels(samples)
            train, val = split_stems([s.stem for s in samples], flags, self.val_fraction, self.seed)
            self._split = {"train": train, "val": val}
        if self.paired_batches:
            from inpaintseg.data.pairing import ORIGINALS_FOLDER
            from inpaintseg.data.paired import (ORIGINAL_TARGET, PairedInpaintDataset,
                                                find_originals)

            originals = find_originals(self.data_dir / "train" / ORIGINALS_FOLDER, [s.stem for s in samples])
            transform = train_transform(self.img_size, self.input_mode, degradations=self.degradations,
                                        additional_targets={ORIGINAL_TARGET: "image"})
            self.train_set = PairedInpaintDataset(self.images_dir, self.masks_dir, originals, transform,
                                                  stems=self._split["train"])
        else:
            self.train_set = InpaintDataset(self.images_dir, self.masks_dir,
                                            train_transform(self.img_size, self.input_mode,
                                                            degradations=self.degradations),
                                            stems=self._split["train"])
        self.val_set = InpaintDataset(self.images_dir, self.masks_dir,
                                      eval_transform(self.img_size, self.input_mode),
                                      stems=self._split["val"])
        self.summary = {"n_images": len(samples), "n_train": len(self.train_set),
                        "n_val": len(self.val_set), "seed": self.seed, "val_fraction": self.val_fraction,
                        "input_mode": self.input_mode, "img_size": self.img_size}
        if flags is not None:
            self.summary["n_empty_masks"] = int(len(flags) - sum(flags))
        if self.paired_batches:
            self.summary["n_train_pairs"] = self.train_set.n_pairs
        if self.curriculum_epochs:
            from inpaintseg.data.curriculum import CurriculumSampler, read_difficulties

            meta = training_folder(self.data_dir) / "meta.json"
            difficulties = read_difficulties(meta, self.train_set.stems)
            self.sampler = CurriculumSampler(difficulties, self.curriculum_epochs, self.seed)
            self.summary["curriculum"] = {"epochs": self.curriculum_epochs,
                                          "n_easy": int((difficulties == 0).sum())}

    @property
    def train_items_per_batch(self) -> int:
        """Dataset items per training batch: `batch_size`, or half of it with paired batches (2 images each)."""
        return max(1, self.batch_size // 2) if self.paired_batches else self.batch_size

    def _loader(self, dataset, shuffle: bool, drop_last: bool, batch_size: int | None = None,
                collate_fn=None, sampler=None):
        import torch
        from torch.utils.data import DataLoader

        if dataset is None:
            raise RuntimeError("call InpaintDataModule.setup() before asking for a dataloader")
        return DataLoader(dataset, batch_size=batch_size or self.batch_size, shuffle=shuffle and sampler is None,
                          sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), worker_init_fn=seed_worker, collate_fn=collate_fn)

    def train_dataloader(self):
        # Drop a ragged last batch only when there is more than one batch (tiny sets keep every image).
        dataset = self.train_set
        items = self.train_items_per_batch
        collate = None
        if self.paired_batches:
            from inpaintseg.data.paired import collate_pairs as collate
        return self._loader(dataset, shuffle=True, drop_last=dataset is not None and len(dataset) > items,
                            batch_size=items, collate_fn=collate, sampler=self.sampler)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False, drop_last=False)


@functools.lru_cache(maxsize=None)
def datamodule_class() -> type:
    """Build `InpaintDataModule` on first use: importing lightning takes ~5 s, which commands that only
    read data (check-data) should not pay."""
    import lightning

    cls = type("InpaintDataModule", (_DataModuleMethods, lightning.LightningDataModule),
               {"__module__": "inpaintseg.data", "__doc__": _DataModuleMethods.__doc__})
    cls.__qualname__ = "InpaintDataModule"
    return cls
