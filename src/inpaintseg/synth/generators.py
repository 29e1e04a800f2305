"""The small learned inpainters: definition, deterministic training on pristine photo crops, cache.

Real generative inpainting leaves the traces of its decoder: LaMa up-samples with stride-2
transposed convolutions, DeepFill with 2x nearest resize + (gated) convolution, latent-diffusion
inpainting decodes the whole image through a VAE decoder. Each `GeneratorSpec` is a small
encoder-decoder of that kind (no skip connections, as in those networks): a 5x5 head, `depth`
stride-2 down-sampling convolutions, dilated residual blocks, `depth` up-sampling stages of one
`upsampler` kind, a 3x3 tail. Input: the image in [-1, 1] with the hole zeroed, plus the mask;
output: RGB logits (sigmoid gives [0, 1]).

Training (`train_generator`): masked L1 (hole + 0.1 x known pixels) + a light high-frequency term
(L1 of Laplacians inside the hole), Adam with cosine decay, on random crops of the packaged photos
with random masks from `synth.masks`. It runs on one thread with `torch.use_deterministic_algorithms`
and fixed seeds, so the weights are bitwise the same for the same settings (on the same CPU kind).

The set (tiny / demo / full: width and training budget) defaults to $INPAINTSEG_GENERATORS, else
"demo". Cache: `cache_dir()/generators/<name>-<key16>.safetensors` (no pickle), where the key hashes the
spec, the training budget, the training photos' bytes and the torch version. The cache directory is
$INPAINTSEG_CACHE_DIR, else $XDG_CACHE_HOME/inpaintseg, else ~/.cache/inpaintseg.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from inpaintseg.errors import InpaintsegError

CACHE_ENV = "INPAINTSEG_CACHE_DIR"
GENERATOR_SET_ENV = "INPAINTSEG_GENERATORS"  # the default generator set (tests set "tiny")
DEFAULT_GENERATOR_SET = "demo"
CACHE_FORMAT = 1
UPSAMPLERS = ("transposed", "nearest", "bilinear", "shuffle")
GENERATOR_SETS = ("tiny", "demo", "full")
TRAINING_SEED = 1234
# Names of the generators trained in this process (tests check that a cached one is not retrained).
TRAINED: list[str] = []


@dataclass(frozen=True)
class GeneratorSpec:
    """Architecture of one learned inpainter."""

    upsampler: str  # one of UPSAMPLERS
    depth: int  # 2x down/up stages
    width: int  # channels after the head; doubled per stage up to 4x
    gated: bool = False  # DeepFill-style gated convolutions
    blocks: int = 2  # dilated residual blocks at the bottleneck
    task: str = "inpaint"  # "inpaint" (fill the hole) or "autoencode" (reconstruct everything)


@dataclass(frozen=True)
class TrainBudget:
    steps: int
    batch: int
    crop: int
    lr: float = 2e-3
    hf_weight: float = 0.5


# The networks (one per learned method); each generator set scales their width and training.
SPECS = {
    "transposed": GeneratorSpec("transposed", depth=3, width=24),  # LaMa-like
    "nearest": GeneratorSpec("nearest", depth=2, width=24, gated=True),  # DeepFill-like
    "bilinear": GeneratorSpec("bilinear", depth=3, width=16, blocks=3),
    "shuffle": GeneratorSpec("shuffle", depth=2, width=24),
    "vae": GeneratorSpec("nearest", depth=3, width=24, task="autoencode"),  # latent-diffusion decoder-like
}
SET_SETTINGS = {  # width divisor, training budget
    "tiny": (4, TrainBudget(steps=12, batch=4, crop=32)),
    "demo": (2, TrainBudget(steps=150, batch=8, crop=64)),
    # full at 400 steps measured 708 CPU-s for all five (2-core machine, shared); 300 keeps it < 10 CPU-min.
    "full": (1, TrainBudget(steps=300, batch=8, crop=96)),
}


def default_generator_set() -> str:
    """$INPAINTSEG_GENERATORS, else DEFAULT_GENERATOR_SET."""
    return os.environ.get(GENERATOR_SET_ENV) or DEFAULT_GENERATOR_SET


def spec_for(name: str, generator_set: str) -> tuple[GeneratorSpec, TrainBudget]:
    if name not in SPECS:
        raise InpaintsegError(f"unknown generator {name!r}; known: {', '.join(SPECS)}.")
    if generator_set not in SET_SETTINGS:
        raise InpaintsegError(f"--generators must be one of {', '.join(GENERATOR_SETS)}, got {generator_set!r}.")
    divisor, budget = SET_SETTINGS[generator_set]
    spec = SPECS[name]
    spec = GeneratorSpec(spec.upsampler, spec.depth, max(4, spec.width // divisor), spec.gated, spec.blocks, spec.task)
    return spec, budget


# ------------------------------------------------------------------------------ networks


def build_generator(spec: GeneratorSpec):
    """The nn.Module for `spec` (torch is imported here, not at module import)."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Module:
        pad = dilation * (k - 1) // 2
        if spec.gated:
            return GatedConv(cin, cout, k, stride, pad, dilation)
        return nn.Conv2d(cin, cout, k, stride, pad, dilation)

    class GatedConv(nn.Module):
        """DeepFill v2's gated convolution: features x sigmoid(gate)."""

        def __init__(self, cin, cout, k, stride, pad, dilation):
            super().__init__()
            self.conv = nn.Conv2d(cin, 2 * cout, k, stride, pad, dilation)

        def forward(self, x):
            features, gate = self.conv(x).chunk(2, dim=1)
            return features * torch.sigmoid(gate)

    class UpSample(nn.Module):
        """One 2x up-sampling stage of the chosen kind, then an activation."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            kind = spec.upsampler
            if kind == "transposed":  # LaMa: ConvTranspose2d k3 s2 p1 op1
                self.body = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
            elif kind == "shuffle":
                self.body = nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))
            elif kind in ("nearest", "bilinear"):
                up = nn.Upsample(scale_factor=2, mode=kind, **({"align_corners": False} if kind == "bilinear" else {}))
                self.body = nn.Sequential(up, conv(cin, cout))
            else:
                raise ValueError(f"unknown upsampler {kind!r}; expected one of {UPSAMPLERS}")
            self.act = nn.ELU()

        def forward(self, x):
            return self.act(self.body(x))

    class DilatedBlock(nn.Module):
        def __init__(self, channels: int, dilation: int):
            super().__init__()
            self.conv1 = conv(channels, channels, dilation=dilation)
            self.conv2 = conv(channels, channels)
            self.act = nn.ELU()

        def forward(self, x):
            return x + self.conv2(self.act(self.conv1(x)))

    class InpaintGenerator(nn.Module):
        def __init__(self):
            super().__init__()
            self.spec = spec
            w = spec.width
            chans = [min(w * 2**i, 4 * w) for i in range(spec.depth + 1)]
            self.head = nn.Sequential(conv(4, w, 5), nn.ELU())
            self.down = nn.ModuleList(
                nn.Sequential(conv(chans[i], chans[i + 1], 3, stride=2), nn.ELU()) for i in range(spec.depth))
            self.body = nn.Sequential(*(DilatedBlock(chans[-1], 2 ** (1 + i % 3)) for i in range(spec.blocks)))
            self.up = nn.ModuleList(UpSample(chans[i + 1], chans[i]) for i in reversed(range(spec.depth)))
            self.tail = nn.Conv2d(w, 3, 3, padding=1)

        def forward(self, image, mask):
            """image (B,3,H,W) in [0,1], mask (B,1,H,W) {0,1}; H, W multiples of 2**depth -> RGB logits."""
            x = torch.cat([(image * 2 - 1) * (1 - mask), mask], dim=1)
            x = self.head(x)
            for stage in self.down:
                x = stage(x)
            x = self.body(x)
            for stage in self.up:
                x = stage(x)
            return self.tail(x)

    return InpaintGenerator()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread (bitwise reproducible reductions), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_generator(model, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The network's output for one image (the whole frame; the caller composites the hole).

    Shape: (H, W, 3) uint8, (H, W) uint8 {0, 1} -> (H, W, 3) uint8. Any H, W (reflect-padded to a
    multiple of 2**depth and cropped back).
    """
    import torch
    import torch.nn.functional as F

    height, width = mask.shape
    multiple = 2 ** model.spec.depth
    pad_h, pad_w = -height % multiple, -width % multiple
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    if model.spec.task == "autoencode":
        m = torch.zeros_like(m)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        m = F.pad(m, (0, pad_w, 0, pad_h), mode=mode)
    with one_thread(), torch.no_grad():
        out = torch.sigmoid(model(x, m))[0, :, :height, :width]
    return (out.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ training


def _batch(rng: np.random.Generator, photos: Sequence[np.ndarray], budget: TrainBudget,
           task: str) -> tuple[np.ndarray, np.ndarray]:
    from inpaintseg.synth.masks import random_mask
    from inpaintseg.synth.photos import random_crop

    images = np.empty((budget.batch, budget.crop, budget.crop, 3), np.uint8)
    masks = np.zeros((budget.batch, budget.crop, budget.crop), np.uint8)
    for i in range(budget.batch):
        images[i] = random_crop(rng, photos[int(rng.integers(len(photos)))], budget.crop)[0]
        if task == "inpaint":
            masks[i] = random_mask(rng, budget.crop)[0]
    return images, masks


def train_generator(spec: GeneratorSpec, budget: TrainBudget, photos: Sequence[np.ndarray],
                    seed: int = TRAINING_SEED) -> dict:
    """Train one generator deterministically; return its state dict (CPU tensors)."""
    import torch
    import torch.nn.functional as F

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with one_thread():
            torch.manual_seed(seed)
            rng = np.random.default_rng([seed, UPSAMPLERS.index(spec.upsampler), spec.depth, spec.width])
            model = build_generator(spec).train()
            optimiser = torch.optim.Adam(model.parameters(), lr=budget.lr, betas=(0.5, 0.9))
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, budget.steps)
            laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)
            for _ in range(budget.steps):
                images, masks = _batch(rng, photos, budget, spec.task)
                x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
                m = torch.from_numpy(masks).float()[:, None]
                out = torch.sigmoid(model(x, m))
                error = (out - x).abs()
                if spec.task == "inpaint":
                    hole = (error * m).sum() / (3 * m.sum()).clamp(min=1)
                    known = (error * (1 - m)).sum() / (3 * (1 - m).sum()).clamp(min=1)
                    loss, weight = hole + 0.1 * known, m
                else:
                    loss, weight = error.mean(), torch.ones_like(m)
                if budget.hf_weight:
                    detail = (F.conv2d(out, laplace, padding=1, groups=3) - F.conv2d(x, laplace, padding=1, groups=3)).abs()
                    loss = loss + budget.hf_weight * (detail * weight).sum() / (3 * weight.sum()).clamp(min=1)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """$INPAINTSEG_CACHE_DIR, else $XDG_CACHE_HOME/inpaintseg, else ~/.cache/inpaintseg."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "inpaintseg"


def _photo_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def generator_key(spec: GeneratorSpec, budget: TrainBudget, photo_digest: str) -> str:
    import torch

    record = {"format": CACHE_FORMAT, "spec": asdict(spec), "budget": asdict(budget), "seed": TRAINING_SEED,
              "photos": photo_digest, "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _cost(spec: GeneratorSpec, budget: TrainBudget) -> float:
    """Rough relative training cost (for scheduling only): pixels x channels^2 at full resolution."""
    return budget.steps * budget.batch * budget.crop**2 * spec.width**2 * (2.0 if spec.gated else 1.0)


def _train_job(job: tuple) -> tuple[str, dict, float]:
    """Worker entry (also used in-process): (name, spec, budget, photo paths) -> (name, state, seconds)."""
    from inpaintseg.synth.photos import Photo, load_photo

    name, spec, budget, photo_items = job
    photos = [load_photo(Photo(n, Path(p))) for n, p in photo_items]
    start = time.perf_counter()
    state = train_generator(spec, budget, photos)
    return name, state, time.perf_counter() - start


class GeneratorBank:
    """The learned inpainters of one generator set: loaded from the cache or trained once, then kept."""

    def __init__(self, generator_set: str | None = None, rebuild: bool = False, workers: int | None = None,
                 log: Callable[[str], None] | None = None):
        from inpaintseg.synth.photos import packaged_photos

        generator_set = generator_set or default_generator_set()
        if generator_set not in SET_SETTINGS:
            raise InpaintsegError(f"--generators must be one of {', '.join(GENERATOR_SETS)}, got {generator_set!r}.")
        self.generator_set = generator_set
        self.rebuild = rebuild
        self.workers = workers
        self.log = log or (lambda message: None)
        self.photos = packaged_photos()
        if not self.photos:
            raise InpaintsegError("the learned generators train on the photos bundled with scikit-image; "
                                  "none were found. Install it: pip install scikit-image")
        self._digest = None
        self._models: dict[str, object] = {}
        self.keys: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def path(self, name: str) -> Path:
        return cache_dir() / "generators" / f"{name}-{self.key(name)[:16]}.safetensors"

    def key(self, name: str) -> str:
        if name not in self.keys:
            if self._digest is None:
                self._digest = _photo_digest([p.path for p in self.photos])
            self.keys[name] = generator_key(*spec_for(name, self.generator_set), self._digest)
        return self.keys[name]

    def _load(self, name: str):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(name)
        if self.rebuild or not path.is_file():
            return None
        try:
            state = load_file(str(path))
            model = build_generator(spec_for(name, self.generator_set)[0])
            model.load_state_dict(state, strict=True)
        except (OSError, SafetensorError, RuntimeError, ValueError) as exc:
            self.log(f"cached generator {path} is unusable ({exc}); retraining it")
            return None
        return model.eval()

    def _save(self, name: str, state: dict) -> None:
        from safetensors.torch import save

        from inpaintseg.io import atomic_write_bytes

        spec, budget = spec_for(name, self.generator_set)
        # One metadata entry: safetensors keeps metadata in a hash map, so several keys would be
        # written in a varying order and the file would not be byte-identical between runs.
        record = {"name": name, "key": self.key(name), "spec": asdict(spec), "budget": asdict(budget)}
        metadata = {"inpaintseg_generator": json.dumps(record, sort_keys=True)}
        atomic_write_bytes(self.path(name), save(state, metadata=metadata))

    def prepare(self, names: Sequence[str]) -> None:
        """Load every generator in `names` from the cache; train (in parallel) the missing ones."""
        missing = []
        for name in dict.fromkeys(names):
            if name in self._models:
                continue
            model = self._load(name)
            if model is None:
                missing.append(name)
            else:
                self._models[name] = model
        if not missing:
            return
        # Tiny nets train in a second: separate processes (each importing torch) would cost more.
        parallel = 1 if self.generator_set == "tiny" else min(len(missing), os.cpu_count() or 1, 2)
        workers = self.workers or parallel
        photo_items = [(p.name, str(p.path)) for p in self.photos]
        jobs = [(name, *spec_for(name, self.generator_set), photo_items) for name in missing]
        jobs.sort(key=lambda job: -_cost(job[1], job[2]))  # longest first balances the workers
        self.log(f"training {len(missing)} learned generator(s) ({self.generator_set} set: {', '.join(missing)}) "
                 f"on {workers} process(es); cached in {cache_dir() / 'generators'} for later runs")
        start = time.perf_counter()
        if workers <= 1:
            results = map(_train_job, jobs)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            results = pool.map(_train_job, jobs)
        try:
            for name, state, seconds in results:
                self._save(name, state)
                self.seconds[name] = seconds
                TRAINED.append(name)
                model = build_generator(spec_for(name, self.generator_set)[0])
                model.load_state_dict(state)
                self._models[name] = model.eval()
                self.log(f"  trained generator {name} in {seconds:.1f} s")
        finally:
            if workers > 1:
                pool.shutdown()
        self.log(f"generators ready in {time.perf_counter() - start:.1f} s")

    def model(self, name: str):
        if name not in self._models:
            self.prepare([name])
        return self._models[name]
