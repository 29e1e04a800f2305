"""Reading samples: one image/mask pair decoded with `inpaintseg.fileio`'s rules, and the torch Dataset.

Problems inside a file (corrupt, truncated, mask size differs from its image) are found when the file is
read: `load_sample` raises a DataError naming the file (``check-data`` scans every file up front).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inpaintseg.data.pairing import Sample, pair_files
from inpaintseg.errors import DataError, name_list
from inpaintseg.fileio import read_image, read_mask_checked


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
    mask, note = read_mask_checked(sample.mask_path)
    if note:
        warn_empty_read(sample.mask_path, note)
    check_mask_size(sample, image.shape, mask.shape)
    return image, mask


_WARNED: set[Path] = set()
WARN_LIMIT = 5  # per process; then one line pointing at check-data, which lists them all


def warn_empty_read(path: Path, note: str) -> None:
    """Say (once per file, at most WARN_LIMIT files per process) that a mask with non-zero values reads as
    empty (e.g. a 0/1 mask with a stray 2 is read 0/255-style: nothing >= 128): it trains as "nothing inpainted"."""
    import sys

    if path in _WARNED:
        return
    _WARNED.add(path)
    if len(_WARNED) <= WARN_LIMIT:
        print(f"warning: {path}: its non-zero values all read as 0 ({note}), so it counts as an empty mask (nothing "
              "inpainted). Store masks as 0/255 or 0/1 (a pixel is manipulated at >= 128 of 255, or at 1 in a 0/1 "
              "mask).", file=sys.stderr, flush=True)
    elif len(_WARNED) == WARN_LIMIT + 1:
        print(f"warning: more masks read as empty; `inpaintseg check-data {path.parent.parent.parent}` lists every "
              "one.", file=sys.stderr, flush=True)


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
    pipeline from `inpaintseg.data.transforms` (it normalises); without one, the image is ImageNet-normalised
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

        from inpaintseg.data.transforms import normalize

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


class LazySamples(Sequence):
    """(image uint8 RGB, mask uint8 {0,1} or None) at original size, read from disk when indexed."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return load_sample(self.samples[index])
