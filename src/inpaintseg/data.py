"""The dataset layer: pairing image/mask files, the torch Dataset, the seeded split, the DataModule.

Folder layout: ``ROOT/train/images``, ``ROOT/train/masks``, ``ROOT/test/images`` (optionally
``ROOT/test/masks``). Images and masks pair by file stem (``a.jpg`` <-> ``a.png``), sorted by stem.
Decoding rules live in `inpaintseg.io` (pixels as stored, RGB uint8 images, {0,1} masks).

Problems with a folder's listing (missing or empty folder, image without mask, mask without image,
duplicate stems, zero-byte or non-image files) are all found at once by `scan_pairs` and raised together
by `pair_files`. Problems inside a file (corrupt, truncated, mask size differs from its image) are found
when the file is read: `load_sample` raises a DataError naming the file, and ``check-data`` scans every
file up front.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaintseg.errors import ConfigError, DataError, name_list
from inpaintseg.io import IMAGE_EXTENSIONS, is_hidden, is_image_file, read_image, read_mask

# Files that operating systems drop into folders; ignored like hidden files.
SYSTEM_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class Sample:
    """One image and, when masks exist, its mask."""

    stem: str
    image_path: Path
    mask_path: Path | None = None


@dataclass(frozen=True)
class Problem:
    """One kind of problem with a dataset folder and every name it concerns."""

    title: str  # e.g. "images without a mask"
    where: str  # the folder or file the names live in
    names: tuple[str, ...]
    fix: str

    def message(self) -> str:
        count = f" ({len(self.names)})" if self.names else ""
        names = f": {name_list(self.names)}" if self.names else ""
        return f"{self.title}{count} in {self.where}{names}. Fix: {self.fix}"


@dataclass
class PairScan:
    """The outcome of listing an images folder and (optionally) its masks folder."""

    samples: list[Sample] = field(default_factory=list)  # complete, unambiguous pairs (or images)
    problems: list[Problem] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)  # every image file by stem
    masks: dict[str, Path] = field(default_factory=dict)  # every mask file by stem
    duplicated: set[str] = field(default_factory=set)  # stems with several files in one folder


def _is_ignored(path: Path) -> bool:
    return is_hidden(path) or path.name.lower() in SYSTEM_JUNK_NAMES


def _check_folder(folder: Path, role: str) -> Problem | None:
    """A problem if `folder` is missing or not a folder."""
    if not folder.exists():
        return Problem(f"missing {role} folder", str(folder), (),
                       f"create {folder} or point to the folder that holds the {role}")
    if not folder.is_dir():
        return Problem(f"{role} folder is a file", str(folder), (),
                       f"{folder} must be a folder of {role}")
    return None


def _list_folder(folder: Path, role: str) -> tuple[dict[str, Path], set[str], list[Problem]]:
    """Map stem -> file for one folder, the duplicated stems, and every listing problem in it."""
    problem = _check_folder(folder, role)
    if problem:
        return {}, set(), [problem]
    entries = sorted(p for p in folder.iterdir() if not _is_ignored(p))
    by_stem: dict[str, list[Path]] = {}
    not_images, empty_files = [], []
    for path in entries:
        if path.is_dir() or not is_image_file(path):
            not_images.append(path.name)
            continue
        if path.stat().st_size == 0:
            empty_files.append(path.name)
        by_stem.setdefault(path.stem, []).append(path)
    problems = []
    if not entries:
        problems.append(Problem(f"empty {role} folder", str(folder), (),
                                f"put the {role} files ({', '.join(IMAGE_EXTENSIONS)}) in it"))
    if not_images:
        problems.append(Problem(
            "entries that are not image files", str(folder), tuple(not_images),
            f"move them out; {role} must be files ending in {', '.join(IMAGE_EXTENSIONS)}"))
    if empty_files:
        problems.append(Problem("empty (0-byte) files", str(folder), tuple(empty_files),
                                "re-export or remove them"))
    duplicated = {stem for stem, paths in by_stem.items() if len(paths) > 1}
    if duplicated:
        problems.append(Problem(
            "duplicate stems (two files with the same name but different extensions)", str(folder),
            tuple(f"{stem} ({', '.join(p.name for p in by_stem[stem])})" for stem in sorted(duplicated)),
            "keep one file per name"))
    return {stem: paths[0] for stem, paths in by_stem.items()}, duplicated, problems


def scan_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None) -> PairScan:
    """List and pair files without raising; every listing problem is returned in `.problems`."""
    images_dir = Path(images_dir)
    images, duplicated, problems = _list_folder(images_dir, "images")
    masks: dict[str, Path] = {}
    if masks_dir is not None:
        masks_dir = Path(masks_dir)
        masks, mask_duplicated, mask_problems = _list_folder(masks_dir, "masks")
        problems += mask_problems
        duplicated |= mask_duplicated
        if images and masks:
            no_mask = sorted(set(images) - set(masks))
            no_image = sorted(set(masks) - set(images))
            if no_mask:
                problems.append(Problem(
                    "images without a mask", str(images_dir), tuple(images[s].name for s in no_mask),
                    f"add a mask with the same name to {masks_dir} (an all-black mask if nothing "
                    "was inpainted) or remove the image"))
            if no_image:
                problems.append(Problem(
                    "masks without an image", str(masks_dir), tuple(masks[s].name for s in no_image),
                    f"add the image to {images_dir} or remove the mask"))
    samples = [Sample(stem, images[stem], masks.get(stem)) for stem in sorted(images)
               if stem not in duplicated and (masks_dir is None or stem in masks)]
    return PairScan(samples, problems, images, masks, duplicated)


def problems_message(problems: Sequence[Problem]) -> str:
    """One error message for several problems, one line each."""
    if len(problems) == 1:
        return problems[0].message()
    return f"{len(problems)} problems with the dataset:\n" + "\n".join(
        f"  - {p.message()}" for p in problems)


def pair_files(images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None) -> list[Sample]:
    """Pair images with masks by stem, sorted by stem; raise one DataError listing every problem."""
    scan = scan_pairs(images_dir, masks_dir)
    if scan.problems:
        raise DataError(problems_message(scan.problems))
    return scan.samples


def check_mask_size(sample: Sample, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> None:
    """Raise DataError when a mask's height/width differ from its image's."""
    if tuple(image_shape[:2]) != tuple(mask_shape[:2]):
        raise DataError(
            f"{sample.mask_path}: mask size {mask_shape[1]}x{mask_shape[0]} (WxH) differs from its image "
            f"{sample.image_path.name} ({image_shape[1]}x{image_shape[0]}). Masks must have their "
            "image's exact size; re-export the mask at the image's size."
        )


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode one sample: RGB uint8 (H, W, 3) image and uint8 {0,1} (H, W) mask (None without a mask)."""
    image = read_image(sample.image_path)
    if sample.mask_path is None:
        return image, None
    mask = read_mask(sample.mask_path)
    check_mask_size(sample, image.shape, mask.shape)
    return image, mask


def select_stems(samples: Sequence[Sample], stems: Sequence[str], where: str) -> list[Sample]:
    """The samples named by `stems` (in that order); DataError naming stems that are not there."""
    by_stem = {s.stem: s for s in samples}
    unknown = [s for s in stems if s not in by_stem]
    if unknown:
        raise DataError(
            f"{len(unknown)} stems of the requested split are not in {where}: {name_list(unknown)}. "
            "The data changed since the split was made; drop the saved split to make a new one."
        )
    return [by_stem[s] for s in stems]


class InpaintDataset:
    """A map-style torch dataset of image/mask pairs.

    Item: ``{"image": float32 tensor (3, H, W) normalised, "mask": float32 tensor (1, H, W) in {0, 1}
    (zeros without masks), "stem": str, "size": (H0, W0) original}``. `transform` is an albumentations
    pipeline from `inpaintseg.transforms` (it normalises); without one, the image is ImageNet-normalised
    at its original size.
    """

    def __init__(self, images_dir, masks_dir=None, transform=None, stems: Sequence[str] | None = None):
        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir) if masks_dir is not None else None
        self.transform = transform
        samples = pair_files(self.images_dir, self.masks_dir)
        if stems is not None:
            samples = select_stems(samples, stems, str(self.images_dir))
        self.samples = samples

    @property
    def stems(self) -> list[str]:
        return [s.stem for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        import torch

        from inpaintseg.transforms import normalize

        sample = self.samples[index]
        image, mask = load_sample(sample)
        size = image.shape[:2]
        if mask is None:
            mask = np.zeros(size, np.uint8)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image_f, mask = out["image"], out["mask"]
        else:
            image_f = normalize(image)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image_f.transpose(2, 0, 1), dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None]),
            "stem": sample.stem,
            "size": (int(size[0]), int(size[1])),
        }


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: give each worker (and each epoch) its own augmentation stream.

    Albumentations 2.x keeps a private random state in each Compose, which every worker would otherwise
    copy unchanged (same augmentations in all workers, and in every epoch without persistent workers).
    torch gives each worker a distinct seed drawn from the main process's torch generator, so this is
    reproducible under `seed_everything`.
    """
    import torch

    info = torch.utils.data.get_worker_info()
    seed = (info.seed if info is not None else torch.initial_seed()) % 2**32
    np.random.seed(seed)
    random.seed(seed)
    transform = getattr(getattr(info, "dataset", None), "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def split_stems(stems: Sequence[str], has_mask_pixels: Sequence[bool], val_fraction: float = 0.1,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded train/validation split, stratified on empty vs non-empty masks.

    The validation part has round(n * val_fraction) stems, at least 1 and at most n - 1. When both
    groups (empty and non-empty masks) have >= 2 members, each group appears in both parts (so the
    validation part then has between 2 and n - 2 stems), in proportion to the group sizes. The
    result depends only on the set of stems, the flags, `val_fraction` and `seed` (not on input
    order); both lists are sorted.
    """
    stems = list(stems)
    flags = [bool(f) for f in has_mask_pixels]
    if len(stems) != len(flags):
        raise ValueError(f"split_stems: {len(stems)} stems but {len(flags)} mask flags")
    if len(set(stems)) != len(stems):
        raise ValueError("split_stems: stems must be unique")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(
            f"val_fraction {val_fraction!r} is out of range; expected a number between 0 and 1 "
            "(exclusive), e.g. 0.1."
        )
    if len(stems) < 2:
        raise DataError(
            f"a train/validation split needs at least 2 training images; found {len(stems)}. "
            "Add training images."
        )
    order = sorted(range(len(stems)), key=lambda i: stems[i])
    positives = [stems[i] for i in order if flags[i]]
    negatives = [stems[i] for i in order if not flags[i]]
    n = len(stems)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    rng = np.random.default_rng(seed)
    if len(positives) >= 2 and len(negatives) >= 2:
        # Both groups in both parts: 2 <= n_val <= n - 2; n_pos proportional, clipped so that each
        # group keeps >= 1 member on each side.
        n_val = min(max(n_val, 2), n - 2)
        low = max(1, n_val - (len(negatives) - 1))
        high = min(len(positives) - 1, n_val - 1)
        n_pos = int(np.clip(round(n_val * len(positives) / n), low, high))
        n_neg = n_val - n_pos
        val = [positives[i] for i in rng.permutation(len(positives))[:n_pos]]
        val += [negatives[i] for i in rng.permutation(len(negatives))[:n_neg]]
    else:
        ordered = [stems[i] for i in order]
        val = [ordered[i] for i in rng.permutation(n)[:n_val]]
    val_set = set(val)
    return sorted(s for s in stems if s not in val_set), sorted(val_set)


def mask_has_pixels(samples: Sequence[Sample]) -> list[bool]:
    """For each sample, whether its mask has any manipulated pixel (reads masks one at a time)."""
    return [bool(read_mask(s.mask_path).any()) for s in samples]


class _DataModuleMethods:
    """Training data from ``data_dir/train/{images,masks}``, split into train and validation.

    `split` (``{"train": [...], "val": [...]}``) reuses a saved split; otherwise `setup` reads every mask
    once to stratify a new seeded split. `summary` holds counts for the model's config.
    The public class is `InpaintDataModule` (these methods on a `lightning.LightningDataModule`).
    """

    def __init__(self, data_dir, img_size: int = 256, input_mode: str = "resize", batch_size: int = 16,
                 val_fraction: float = 0.1, seed: int = 0, num_workers: int = 0,
                 split: dict | None = None):
        from inpaintseg.transforms import check_input_mode

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
        return self.data_dir / "train" / "images"

    @property
    def masks_dir(self) -> Path:
        return self.data_dir / "train" / "masks"

    @property
    def split(self) -> dict[str, list[str]]:
        if self._split is None:
            raise RuntimeError("InpaintDataModule.split is known after setup()")
        return {"train": list(self._split["train"]), "val": list(self._split["val"])}

    def setup(self, stage: str | None = None) -> None:
        from inpaintseg.transforms import eval_transform, train_transform

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
        self.train_set = InpaintDataset(self.images_dir, self.masks_dir,
                                        train_transform(self.img_size, self.input_mode),
                                        stems=self._split["train"])
        self.val_set = InpaintDataset(self.images_dir, self.masks_dir,
                                      eval_transform(self.img_size, self.input_mode),
                                      stems=self._split["val"])
        self.summary = {"n_images": len(samples), "n_train": len(self.train_set),
                        "n_val": len(self.val_set), "seed": self.seed, "val_fraction": self.val_fraction,
                        "input_mode": self.input_mode, "img_size": self.img_size}
        if flags is not None:
            self.summary["n_empty_masks"] = int(len(flags) - sum(flags))

    def _loader(self, dataset, shuffle: bool, drop_last: bool):
        import torch
        from torch.utils.data import DataLoader

        if dataset is None:
            raise RuntimeError("call InpaintDataModule.setup() before asking for a dataloader")
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), worker_init_fn=seed_worker)

    def train_dataloader(self):
        # Drop a ragged last batch only when there is more than one batch (tiny sets keep every image).
        dataset = self.train_set
        return self._loader(dataset, shuffle=True,
                            drop_last=dataset is not None and len(dataset) > self.batch_size)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False, drop_last=False)


@functools.lru_cache(maxsize=None)
def _datamodule_class() -> type:
    """Build `InpaintDataModule` on first use: importing lightning takes ~5 s, which commands that only
    read data (check-data) should not pay."""
    import lightning

    cls = type("InpaintDataModule", (_DataModuleMethods, lightning.LightningDataModule),
               {"__module__": __name__, "__doc__": _DataModuleMethods.__doc__})
    cls.__qualname__ = "InpaintDataModule"
    return cls


def __getattr__(name: str):
    """Lazy module attribute: `inpaintseg.data.InpaintDataModule` (PEP 562)."""
    if name == "InpaintDataModule":
        return _datamodule_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
