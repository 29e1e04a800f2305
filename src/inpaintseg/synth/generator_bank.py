"""The learned inpainters of one generator set, loaded from the per-user cache or trained once.

Cache: `cache_dir()/generators/<name>-<key16>.safetensors` (no pickle), where the key hashes the spec, the
training budget, the training photos' bytes, the training seed and the torch version (`generator_key`).
Missing generators train in parallel processes (longest first); a cached file that does not load is
retrained, never trusted. The networks and their training live in `synth.generators`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from inpaintseg.cache import cache_dir
from inpaintseg.errors import InpaintsegError
from inpaintseg.synth.generators import (TRAINING_SEED, GeneratorSpec, TrainBudget, build_generator,
                                         check_generator_set, spec_for, train_generator)

CACHE_FORMAT = 1
LATER_SPEC_FIELDS = ("arch", "adversarial", "feature_matching")
# Names of the generators trained in this process (tests check that a cached one is not retrained).
TRAINED: list[str] = []



def _photo_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def _spec_record(spec: GeneratorSpec) -> dict:
    """The spec as hashed: fields added later (issue 24's arch / adversarial / feature_matching) only when they
    differ from their defaults, so the generators cached before them keep their keys (no retraining)."""
    record, defaults = asdict(spec), {f.name: f.default for f in fields(GeneratorSpec)}
    return {k: v for k, v in record.items() if k not in LATER_SPEC_FIELDS or v != defaults[k]}


def generator_key(spec: GeneratorSpec, budget: TrainBudget, photo_digest: str) -> str:
    import torch

    record = {"format": CACHE_FORMAT, "spec": _spec_record(spec), "budget": asdict(budget), "seed": TRAINING_SEED,
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

        self.generator_set = check_generator_set(generator_set)
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

        from inpaintseg.fileio import atomic_write_bytes

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
