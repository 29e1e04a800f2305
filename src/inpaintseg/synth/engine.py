"""The manipulation engine behind `inpaintseg demo-data`: sampling, determinism, layout, meta.json.

Each sample:
1. a multi-scale random crop of a pristine photo (`photos`), with a camera's sensor noise when asked
   (`camera_noise`, `degrade.camera_noise`), often JPEG-compressed first at a camera's quality
   (`degrade.sample_pre_jpeg`);
2. a share `untouched_fraction` of samples (spread evenly over the indices) is left untouched:
   empty mask, method "none"; some of them are blurred / denoised / sharpened / resampled as a
   whole (hard negatives, `blend.retouch_whole`);
3. otherwise a random mask (`masks`) and a method: a family drawn uniformly among the selected
   ones, then a method of it; the method's fill, sometimes with noise re-injected, sharpened or
   blurred (`blend.break_shortcuts`), is copied into the photo inside the mask only (or, for a method whose
   `Fill.whole_frame` is set, its whole output is the image: decoder traces outside the label too);
4. the editing tool's save (`degrade.sample_resave`: PNG, or JPEG at an export quality), for the image and
   its original alike, untouched samples included;
5. a chain of global degradations (`degrade`), the same kind of chain for untouched samples.

Every sample has its own random generator seeded from (seed, split, index): the output does not
depend on the order of generation, and the same arguments give the same bytes (the learned
generators are trained deterministically and cached, see `generators`).

Layout::

    OUT/train/images/train_00000.png   OUT/train/masks/train_00000.png   OUT/train/meta.json
    OUT/train/originals/train_00000.png   (--with-originals: the pristine crop, same degradations)
    OUT/test/images/test_00000.png     OUT/test/masks/test_00000.png     OUT/test/meta.json
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from inpaintseg.data.pairing import ORIGINALS_FOLDER
from inpaintseg.errors import InpaintsegError
from inpaintseg.fileio import atomic_write_text, write_png
from inpaintseg.synth import blend, degrade
from inpaintseg.synth.generators import check_generator_set
from inpaintseg.synth.masks import random_mask
from inpaintseg.synth.photos import PHOTO_SIDE_PER_CROP, Photo, PhotoCache, find_photos, random_crop, warn_stderr
from inpaintseg.synth.registry import FAMILIES, MethodContext, all_methods, select_methods

GENERATOR = "inpaintseg demo-data"
FORMAT_VERSION = 3  # 3: meta.json records each image's "resave"; pre_jpeg at camera qualities
SPLITS = ("train", "test")
_SPLIT_CODES = {"train": 1, "test": 2}
DEFAULT_UNTOUCHED_FRACTION = 0.10
MIN_SIZE, MAX_SIZE = 32, 2048
MAX_IMAGES = 100_000
MAX_WORKERS = 64
MAX_FILL_NOISE = 2.5  # x the smaller default probability 0.4 = 1: noise in every fill
ORIGINALS_SPLIT = "train"  # --with-originals writes train/originals/
META_FILE = "meta.json"  # OUT/<split>/meta.json: method, family and settings of every image
_UNTOUCHED_STREAM = 0x4E4F4E45  # separates the untouched-offset generator from sample_rng
_STEM_RE = re.compile(r"^(train|test)_\d{5,}\.png$")


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one sample, independent of every other sample."""
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


def is_untouched(seed: int, split: str, index: int, fraction: float = DEFAULT_UNTOUCHED_FRACTION) -> bool:
    """Whether sample `index` is left untouched: spread evenly, `fraction` of any run of indices.

    Index i is untouched when floor((i + 1) * f + u) > floor(i * f + u), with a random offset u per
    (seed, split): any n consecutive indices hold floor(n * f) or ceil(n * f) untouched samples.
    """
    offset = np.random.default_rng([seed, _SPLIT_CODES[split], _UNTOUCHED_STREAM]).random()
    return np.floor((index + 1) * fraction + offset) > np.floor(index * fraction + offset)


def choose_method(rng: np.random.Generator, names: list[str]) -> str:
    """A family uniformly among those present in `names`, then a method of it uniformly."""
    registry = all_methods()
    families = [f for f in FAMILIES if any(registry[n].family == f for n in names)]
    family = families[int(rng.integers(len(families)))]
    members = [n for n in names if registry[n].family == family]
    return members[int(rng.integers(len(members)))]


def method_table() -> str:
    """One line per method: name, family, description (what --list-methods prints)."""
    registry = all_methods()
    width = max(len(n) for n in registry)
    fam_width = max(len(m.family) for m in registry.values())
    return "\n".join(f"{m.name:<{width}}  {m.family:<{fam_width}}  {m.description}"
                     + (f" [not installed: pip install 'inpaintseg[{m.requires[1]}]']" if m.missing() else "")
                     for m in registry.values())


def make_sample(rng: np.random.Generator, photos: PhotoCache, size: int, untouched: bool, methods: list[str],
                level: str, generators=None, camera_noise: float = 0.0,
                fill_noise: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """One sample: (image, mask {0,1}, info for meta.json, pristine original with the same degradations).
    `camera_noise`: the probability that the source photo gets a camera's sensor noise before everything else;
    `fill_noise`: the multiplier of the probability that a fill gets noise re-injected (`blend.break_shortcuts`).

    Shape: -> (H, W, 3) uint8, (H, W) uint8, dict, (H, W, 3) uint8, with H = W = size unless a
    kept resize changed it.
    """
    photo, pixels = photos.pick(rng)
    source, crop_info = random_crop(rng, pixels, size)
    info = {"source": photo.name, **crop_info}
    noise = degrade.sample_camera_noise(rng, camera_noise)
    if noise is not None:
        source = degrade.camera_noise(source, noise)
        info["camera_noise"] = noise  # only when drawn: meta.json of a run without the option is unchanged
    pre_jpeg = degrade.sample_pre_jpeg(rng, level)
    if pre_jpeg is not None:
        source = degrade.jpeg(source, pre_jpeg)
    info["pre_jpeg"] = pre_jpeg
    if untouched:
        image, retouch = blend.retouch_whole(rng, source)
        mask = np.zeros((size, size), np.uint8)
        info.update(method="none", family="none", mask_kind="none", hard_negative=retouch, fill={}, post_fill=[])
    else:
        mask, kind = random_mask(rng, size)
        name = choose_method(rng, methods)
        method = all_methods()[name]

        def donor() -> tuple[str, np.ndarray]:
            others = [p for p in photos.photos if p.name != photo.name] or photos.photos
            other = others[int(rng.integers(len(others)))]
            return other.name, random_crop(rng, photos.image(other), size)[0]

        fill = method.fn(MethodContext(rng, donor, generators), source, mask)
        mask = fill.mask
        filled, post = blend.break_shortcuts(rng, source, fill.image, mask, method.family, fill_noise)
        if fill.whole_frame:  # the method's whole output is the edited image (ldm_whole)
            image = filled.copy()
        else:
            image = source.copy()
            inside = mask.astype(bool)
            image[inside] = filled[inside]
        info.update(method=name, family=method.family, mask_kind=kind, hard_negative=None, fill=fill.info,
                    post_fill=post)
    resave = degrade.sample_resave(rng, level)
    image, source = degrade.apply_resave(image, resave), degrade.apply_resave(source, resave)
    ops = degrade.sample_degradations(rng, level)
    image, mask, applied = degrade.apply_degradations(image, mask, ops)
    original, _, _ = degrade.apply_degradations(source, None, applied)
    info["resave"] = resave
    info["degradations"] = applied
    info["shape"] = list(mask.shape)
    info["coverage"] = round(float(mask.mean()), 6)
    return image, mask, info, original


Selection = str | Sequence[str] | None  # "all", names, comma-separated or a list; None: every one


@dataclass(frozen=True)
class EngineSettings:
    """Every setting of one `generate_demo_data` run (one per `inpaintseg demo-data` flag), checked here once
    when made: a bad value raises InpaintsegError naming the parameter (listed in `params`, so the CLI names
    its flag).

    Methods: ``methods`` / ``families`` minus ``exclude_methods`` / ``exclude_families`` select the train
    split's methods; ``test_methods`` / ``test_families``, when given, select the test split's (else it uses
    the train selection): leave-one-family-out for F is ``exclude_families="F", test_families="F"``.
    ``photos_dir``: one folder of pristine photos or a list of folders (pooled); ``packaged_photos`` None:
    the bundled photos only when no ``photos_dir`` is given. ``generators``: the learned generator set (tiny /
    demo / full; None: $INPAINTSEG_GENERATORS, else demo). ``camera_noise``: the share of source photos given a
    camera's sensor noise before the edit (`degrade.camera_noise`; 0 leaves every byte as before);
    ``fill_noise``: the multiplier (0 to MAX_FILL_NOISE) of the probability that a fill gets noise re-injected
    (`blend.break_shortcuts`; 1: the defaults; 0: fills keep their own smoothness).
    ``workers`` > 1 spreads the samples over that many processes (the bytes do not change). ``selection``
    ({split: method names}) is derived, not given.
    """

    n_train: int = 400
    n_test: int = 100
    size: int = 256
    seed: int = 0
    methods: Selection = None
    exclude_methods: Selection = None
    families: Selection = None
    exclude_families: Selection = None
    test_methods: Selection = None
    test_families: Selection = None
    degrade_level: str = "default"
    photos_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None
    packaged_photos: bool | None = None
    untouched_fraction: float = DEFAULT_UNTOUCHED_FRACTION
    camera_noise: float = 0.0
    fill_noise: float = 1.0
    with_originals: bool = False
    generators: str | None = None
    rebuild_generators: bool = False
    workers: int = 1
    selection: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test"):
            self._check_whole(name, 1, MAX_IMAGES, f"{name} must be between 1 and {MAX_IMAGES}")
        self._check_whole("size", MIN_SIZE, MAX_SIZE, f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels")
        self._check_whole("seed", 0, None, "seed must be a non-negative integer")
        for name in ("untouched_fraction", "camera_noise"):
            self._check_fraction(name)
        self._check_fraction("fill_noise", MAX_FILL_NOISE)
        self._check_whole("workers", 1, MAX_WORKERS, f"workers must be between 1 and {MAX_WORKERS}")
        degrade.check_level(self.degrade_level)
        selection = {"train": select_methods(self.methods, self.exclude_methods, self.families,
                                             self.exclude_families)}
        if self.test_methods is None and self.test_families is None:
            selection["test"] = selection["train"]
        else:
            selection["test"] = select_methods(self.test_methods, None, self.test_families, None, prefix="test_")
        if self.generators is not None:
            check_generator_set(self.generators, "generators")
        object.__setattr__(self, "selection", selection)

    def _check_fraction(self, name: str, high: float = 1.0) -> None:
        """A real number in [0, high]."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= high:
            raise InpaintsegError(f"{name} must lie in [0, {high:g}], got {value}.", params=[name])

    def _check_whole(self, name: str, low: int, high: int | None, message: str) -> None:
        """A whole number in [low, high] (high None: unbounded), stored as a plain int."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InpaintsegError(f"{name} must be a whole number, got {value!r}.", params=[name])
        if not low <= value <= (value if high is None else high):
            raise InpaintsegError(f"{message}, got {value}.", params=[name])
        object.__setattr__(self, name, int(value))

    def count(self, split: str) -> int:
        return self.n_train if split == "train" else self.n_test

    def generators_needed(self) -> list[str]:
        """The learned generators the selected methods use (in selection order, repeats kept)."""
        registry = all_methods()
        return [g for split in SPLITS for name in self.selection[split] for g in registry[name].generators]


def engine_settings(settings: EngineSettings | None = None, **options) -> EngineSettings:
    """`settings` (default: every default) with `options` (EngineSettings fields by name) replacing fields;
    an unknown name is a TypeError naming it, a bad value an InpaintsegError naming it."""
    if settings is not None and not isinstance(settings, EngineSettings):
        raise TypeError(f"settings must be an EngineSettings, got {type(settings).__name__}; give n_train, "
                        f"n_test, size, seed etc. as keywords")
    known = [f.name for f in fields(EngineSettings) if f.init]
    unknown = [name for name in options if name not in known]
    if unknown:
        raise TypeError(f"unexpected setting(s) {', '.join(unknown)}; the settings are {', '.join(known)}")
    if settings is None:
        return EngineSettings(**options)
    return dataclasses.replace(settings, **options) if options else settings


def _is_demo_meta(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _prepare_out(out: Path) -> None:
    """Accept a missing or empty folder, or an earlier demo-data output; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise InpaintsegError(f"{out}: exists and is not a folder. Choose a folder path for OUT.")
    if not out.exists() or not any(out.iterdir()):
        return
    if not any(_is_demo_meta(out / split / META_FILE) for split in SPLITS):
        raise InpaintsegError(
            f"{out}: the folder is not empty and is not an earlier demo-data output (it has no "
            f"train/meta.json or test/meta.json written by demo-data). Choose a new or empty "
            f"folder, or delete this one first."
        )


def _remove_stale(split_dir: Path, keep: set[str]) -> None:
    """Delete files from an earlier run that this run does not rewrite."""
    for sub in ("images", "masks", ORIGINALS_FOLDER):
        folder = split_dir / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _STEM_RE.match(path.name) and (path.stem not in keep or sub == ORIGINALS_FOLDER):
                path.unlink()


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to write samples (picklable)."""

    out: Path
    split: str
    size: int
    seed: int
    level: str
    untouched_fraction: float
    methods: tuple[str, ...]
    photos: tuple[Photo, ...]
    generator_set: str
    originals: bool
    camera_noise: float = 0.0
    fill_noise: float = 1.0


def _write_samples(job: _Job, indices: range, photos: PhotoCache | None = None, bank=None) -> dict[str, dict]:
    """Make and write the samples `indices` of one split; return {stem: info}. In a worker process
    the photos are decoded again and the generators loaded from the cache the parent filled."""
    from inpaintseg.synth.generator_bank import GeneratorBank

    photos = photos or PhotoCache(list(job.photos), max_short_side=PHOTO_SIDE_PER_CROP * job.size)
    if bank is None:
        bank = GeneratorBank(job.generator_set, workers=1)
        bank.prepare([g for name in job.methods for g in all_methods()[name].generators])
    split_dir = job.out / job.split
    infos = {}
    for index in indices:
        stem = f"{job.split}_{index:05d}"
        untouched = is_untouched(job.seed, job.split, index, job.untouched_fraction)
        image, mask, info, original = make_sample(sample_rng(job.seed, job.split, index), photos, job.size, untouched,
                                                  list(job.methods), job.level, bank, job.camera_noise,
                                                  job.fill_noise)
        write_png(split_dir / "images" / f"{stem}.png", image)
        write_png(split_dir / "masks" / f"{stem}.png", mask * np.uint8(255))
        if job.originals:
            write_png(split_dir / ORIGINALS_FOLDER / f"{stem}.png", original)
        infos[stem] = info
    return infos


def _run_jobs(job: _Job, n: int, workers: int, photos: PhotoCache, bank) -> dict[str, dict]:
    """All samples of a split, in this process or spread over `workers` processes (same bytes)."""
    if workers <= 1 or n < 2 * workers:
        return _write_samples(job, range(n), photos, bank)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    step = max(1, -(-n // (4 * workers)))  # ~4 chunks per worker balance uneven methods
    chunks = [range(start, min(n, start + step)) for start in range(0, n, step)]
    infos: dict[str, dict] = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(_write_samples, [job] * len(chunks), chunks):
            infos.update(part)
    return infos


def _photos_record(photos_dir) -> str | list[str] | None:
    """meta.json's photos.dir: None, the folder, or the list of pooled folders."""
    from inpaintseg.synth.photos import photo_dirs

    dirs = [str(d) for d in photo_dirs(photos_dir)]
    return None if not dirs else dirs[0] if len(dirs) == 1 else dirs


def _write_meta(path: Path, meta: dict) -> None:
    atomic_write_text(path, json.dumps(meta, indent=1, sort_keys=True) + "\n")


def generate_demo_data(out: str | os.PathLike, settings: EngineSettings | None = None, *,
                       warn: Callable[[str], None] = warn_stderr, log: Callable[[str], None] | None = warn_stderr,
                       **options) -> dict[str, dict]:
    """Write the dataset to `out` (layout in the module docstring); return {split: meta}.

    `settings`: an `EngineSettings`, or its fields as keywords (``generate_demo_data(out, n_train=60,
    size=64, families="classical")``; with both, the keywords replace the settings' fields). `warn` gets the
    skipped photo files, `log` the generator training. `out` must be missing, empty, or an earlier demo-data
    output (then it is overwritten and files beyond the new counts are removed). Raises InpaintsegError for
    bad settings (naming the parameter) or `out`.
    """
    from inpaintseg.synth.generator_bank import GeneratorBank

    settings = engine_settings(settings, **options)
    out = Path(out)
    _prepare_out(out)
    photos = PhotoCache(find_photos(settings.photos_dir, settings.packaged_photos, warn),
                        max_short_side=PHOTO_SIDE_PER_CROP * settings.size)
    needed = settings.generators_needed()
    bank = GeneratorBank(settings.generators, rebuild=settings.rebuild_generators, log=log)
    bank.prepare(needed)
    return {split: _write_split(out, split, settings, photos, bank, needed) for split in SPLITS}


def _split_meta(split: str, settings: EngineSettings, photos: PhotoCache, bank, needed: list[str]) -> dict:
    """meta.json of one split before its images are written ("complete": False, "images" empty)."""
    registry, methods = all_methods(), settings.selection[split]
    return {
        "generator": GENERATOR, "format_version": FORMAT_VERSION, "split": split, "n": settings.count(split),
        "size": settings.size, "seed": settings.seed, "complete": False, "methods": methods,
        "families": sorted({registry[n].family for n in methods}, key=FAMILIES.index),
        "degrade": settings.degrade_level, "untouched_fraction": settings.untouched_fraction,
        **({"camera_noise": settings.camera_noise} if settings.camera_noise else {}),
        **({"fill_noise": settings.fill_noise} if settings.fill_noise != 1.0 else {}),
        "generators": {"set": bank.generator_set, "keys": {g: bank.key(g)[:16] for g in sorted(set(needed))}},
        "photos": {"n": len(photos.photos), "dir": _photos_record(settings.photos_dir),
                   "max_short_side": photos.max_short_side},
        "images": {},
    }


def _write_split(out: Path, split: str, settings: EngineSettings, photos: PhotoCache, bank,
                 needed: list[str]) -> dict:
    """Write one split's images, masks (originals) and meta.json; return the meta."""
    split_dir = out / split
    stems = [f"{split}_{index:05d}" for index in range(settings.count(split))]
    meta = _split_meta(split, settings, photos, bank, needed)
    # Mark the folder as ours before writing images, so an interrupted run can be re-run.
    _write_meta(split_dir / META_FILE, meta)
    _remove_stale(split_dir, set(stems))
    job = _Job(out, split, settings.size, settings.seed, settings.degrade_level, settings.untouched_fraction,
               tuple(settings.selection[split]), tuple(photos.photos), bank.generator_set,
               settings.with_originals and split == ORIGINALS_SPLIT, settings.camera_noise, settings.fill_noise)
    infos = _run_jobs(job, len(stems), settings.workers, photos, bank)
    meta["images"] = {stem: infos[stem] for stem in stems}
    meta["complete"] = True
    _write_meta(split_dir / META_FILE, meta)
    return meta
