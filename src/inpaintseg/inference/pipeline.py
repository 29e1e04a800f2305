"""The folder pipeline: image files -> probability maps -> masks -> submission.csv, masks, probabilities,
scores. `predict_folder` is what `inpaintseg predict`, `main.py`, the demo and the benchmarks call.

`predict_paths` overlaps the stages: the next batch is decoded in a thread (cv2 releases the GIL) while the
model runs on the current one; DenseCRF, when on, runs in a process pool and overlaps with the next batch's
forward pass; PNG encoding and fsync run in a writer thread. At most about three batches of images are in
memory at once. One image that cannot be decoded never costs the others' results: it is named in
`FolderPrediction.failures` and left out of the outputs.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaintseg import fileio, rle
from inpaintseg.data.pairing import problems_message, scan_pairs
from inpaintseg.errors import ConfigError, DataError, InpaintsegError
from inpaintseg.inference import journal
from inpaintseg.inference.inputs import ImageInputs, from_paths, resolve_images
from inpaintseg.inference.crf_pool import CrfRunner
from inpaintseg.inference.postprocess import PostProcess
from inpaintseg.inference.predictor import Predictor
from inpaintseg.metrics import image_score
from inpaintseg.progress import progress_bar

# Listing problems of an images folder that prediction tolerates: stray non-image entries and special files
# (FIFO, device node: never opened) are skipped (and named); 0-byte files and broken symbolic links go through like any undecodable image (named at the end).
TOLERATED_PROBLEM_KINDS = ("not_image", "empty_file", "broken_link", "special_file")
SCORES_HEADER = ("ImageId", "score", "manipulated_fraction", "predicted_label", "verdict", "false_alarm_rate",
                 "score_threshold")
PENDING_WRITES = 16
WRITER_THREADS = 2  # RLE, score, PNG encode + fsync per image: two halve the tail after the last batch

SUBMISSION_FILE = "submission.csv"  # the default --out of predict, and the name in demo and report folders


@dataclass
class ImageResult:
    """One image's outcome: ``probs``/``mask`` at the original size and the image ``score``, or ``error`` when
    it failed."""

    stem: str
    path: Path
    probs: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None
    score: float | None = None


@dataclass
class FolderPrediction:
    """What `predict_folder` did: rows written, files written, images that failed (name, message)."""

    n_images: int
    encoded: dict[str, str] = field(default_factory=dict)  # stem -> RLE, as in the submission
    scores: list[tuple[str, float, float, int]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # notes on folder entries that are not images
    written: dict[str, Path] = field(default_factory=dict)  # "submission" | "masks" | "probs" | "overlays" | "scores"
    engine: str = "torch"  # the engine that ran the network ("torch" | "onnx")
    resumed: int = 0  # rows taken over from an interrupted run's part files (resume=True)
    notes: list[str] = field(default_factory=list)  # resume / discarded part files
    verdicts: dict = field(default_factory=dict)  # ImageId -> inference.verdicts.Verdict
    score_threshold: float | None = None  # the image-level decision's threshold (predicted_label)

    def __repr__(self) -> str:
        levels: dict[str, int] = {}
        for verdict in self.verdicts.values():
            levels[verdict.level] = levels.get(verdict.level, 0) + 1
        counts = ", ".join(f"{n} {level}" for level, n in sorted(levels.items()))
        written = ", ".join(f"{k}={v}" for k, v in self.written.items())
        return (f"FolderPrediction({len(self.scores)} of {self.n_images} images predicted"
                + (f" ({counts})" if counts else "") + f", {len(self.failures)} failed, engine {self.engine}"
                + (f", wrote {written}" if written else "") + ")")

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The scores file's text (`scores_csv`: one row per image, sorted by ImageId); written atomically to
        ``path`` when given."""
        text = scores_csv(self.scores, self.verdicts, self.score_threshold)
        if path is not None:
            fileio.atomic_write_text(path, text)
        return text


def list_images(images_dir: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Image files of a folder sorted by stem, and notes on skipped entries; DataError when unusable."""
    images_dir = Path(images_dir)
    scan = scan_pairs(images_dir)
    fatal = [p for p in scan.problems if p.kind not in TOLERATED_PROBLEM_KINDS]
    if fatal:
        raise DataError(problems_message(fatal))
    if not scan.samples:
        raise DataError(f"{images_dir}: no image files to predict (supported: {', '.join(fileio.IMAGE_EXTENSIONS)}). "
                        "Point --images at the folder that holds the test images.")
    notes = [p.message() for p in scan.problems if p.kind in ("not_image", "special_file")]
    broken = [p for p in scan.broken if fileio.is_image_file(p)]  # named as failures when read
    return sorted([s.image_path for s in scan.samples] + broken, key=lambda p: (p.stem, p.name)), notes


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return fileio.read_image(path), None
    except InpaintsegError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{path}: not enough memory to decode this image. Downscale it or lower --max-pixels."


def plan_batches(n: int, batch_size: int) -> list[list[int]]:
    """Indices 0..n-1 in consecutive batches. Batches are always formed over the WHOLE sorted list, so a
    resumed or sharded run feeds the network the same batches (hence bit-identical probabilities) as one
    uninterrupted run; it only runs fewer of them."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def predict_paths(predictor: Predictor, paths: Sequence[Path], post: PostProcess, crf_workers: int = 1,
                  progress: bool = True, keep_probs: bool = True, *, ids: Sequence[str] | None = None,
                  batches: Sequence[Sequence[int]] | None = None) -> Iterator[ImageResult]:
    """Predict image files in order, yielding one ``ImageResult`` per path (failures included).

    ``ids`` names each path's ImageId (default: the file stem); ``batches`` (lists of indices into ``paths``,
    default `plan_batches`) says which images go through the network together, and only those are predicted.
    """
    if batches is None:
        batches = plan_batches(len(paths), predictor.batch_size)
    ids = [p.stem for p in paths] if ids is None else list(ids)
    crf_runner = CrfRunner(post.crf_params, crf_workers) if post.crf != "off" else None
    bar = progress_bar(sum(map(len, batches)), "predicting", progress)
    pending: list[tuple[ImageResult, np.ndarray | None, np.ndarray | None, cf.Future | None]] = []

    def finish(items) -> Iterator[ImageResult]:
        for result, image, probs, future in items:
            if result.error is None:
                if future is not None:
                    try:
                        probs = crf_runner.result(future, image, probs)
                    except InpaintsegError as exc:
                        result.error = str(exc)
                    except MemoryError:
                        shape = f"{image.shape[1]}x{image.shape[0]}"
                        result.error = (f"{result.path}: DenseCRF ran out of memory on this {shape} image "
                                        "(it runs at native size); use --crf off for images this large.")
                if result.error is None:
                    result.score = image_score(probs)
                    result.mask = post.binarize(probs, result.score)
                    result.probs = probs if keep_probs else None
            bar.update(1)
            yield result

    try:
        with cf.ThreadPoolExecutor(1) as decoder:
            next_decoded = decoder.submit(lambda b: [_read(paths[i]) for i in b], batches[0]) if batches else None
            for index, batch in enumerate(batches):
                decoded = next_decoded.result()
                if index + 1 < len(batches):
                    next_decoded = decoder.submit(lambda b: [_read(paths[i]) for i in b], batches[index + 1])
                good_probs = iter(predictor.predict_proba_batch([img for img, _ in decoded if img is not None]))
                current = []
                for i, (img, err) in zip(batch, decoded):
                    result = ImageResult(stem=ids[i], path=paths[i], error=err)
                    probs = next(good_probs) if img is not None else None
                    future = crf_runner.submit(img, probs) if (crf_runner and probs is not None) else None
                    current.append((result, img, probs, future))
                yield from finish(pending)
                pending = current
            yield from finish(pending)
    finally:
        bar.close()
        if crf_runner is not None:
            crf_runner.close()


def scores_csv(rows: Sequence[tuple[str, float, float, int]], verdicts: dict | None = None,
               score_threshold: float | None = None) -> str:
    """The scores file, sorted by ImageId: ImageId, score (0..1), manipulated_fraction (0..1),
    predicted_label (1 = score >= score_threshold), verdict (the calibrated level), false_alarm_rate (0..1:
    share of untouched validation images scoring at least as high; empty for an old model folder),
    score_threshold."""
    verdicts = verdicts or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCORES_HEADER)
    for stem, score, fraction, label in sorted(rows, key=lambda r: r[0]):
        verdict = verdicts.get(stem)
        rate = None if verdict is None else verdict.false_alarm_rate
        writer.writerow((stem, f"{float(score):.6f}", f"{float(fraction):.6f}", label,
                         "" if verdict is None else verdict.level, "" if rate is None else f"{rate:.4f}",
                         "" if score_threshold is None else f"{score_threshold:g}"))
    return buffer.getvalue()


def check_output_paths(out=None, masks_out=None, probs_out=None, scores_out=None, overlays_out=None,
                       inputs: Sequence[Path] = (), folders: Sequence[Path] = (), model_dir=None) -> None:
    """Fail before any work when an output cannot be written or lies in an input folder: a CSV path that is a
    folder, a PNG folder path that is a file, an unwritable location, an output inside the folder of one
    of the `inputs` image paths or one of `folders` (or the truth masks beside it, in the dataset layout) or
    inside `model_dir`, a path that is a link/FIFO/device, or two outputs on one path (`outputs.check_outputs`)."""
    from inpaintseg.outputs import check_outputs, input_folders

    folders = input_folders(*sorted({Path(p).parent for p in inputs} | {Path(f) for f in folders}))
    check_outputs({"--submission": out, "--scores-out": scores_out},
                  {"--masks-out": masks_out, "--probs-out": probs_out, "--overlays-out": overlays_out},
                  [*folders, model_dir])


def _drain(writes: list, keep: int) -> list:
    """Re-raise errors of finished writes; wait until at most `keep` are pending (bounds memory)."""
    while len(writes) > keep:
        writes.pop(0).result()
    for w in [w for w in writes if w.done()]:
        w.result()
    return [w for w in writes if not w.done()]


def as_inputs(images, recursive: bool = False) -> ImageInputs:
    """`predict_folder`'s ``images``: an `ImageInputs`, a folder / file / glob (`resolve_images`) or paths."""
    if isinstance(images, ImageInputs):
        return images
    if isinstance(images, (str, os.PathLike)):
        return resolve_images(images, recursive)
    return from_paths(images)


def run_settings(model, post: PostProcess, masks_out=None, probs_out=None, overlays_out=None,
                 rle_order: str = "row") -> dict:
    """What a row of a part file depends on: `--resume` refuses part files written with other settings
    (weights, engine, precision, post-processing, score threshold, RLE order and which PNG folders get files)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    choice = getattr(model, "engine_choice", None)
    return {"weights_sha256": digest.hexdigest(), "input": model.config.input.to_dict(),
            "engine": choice.engine if choice else "torch", "precision": getattr(model, "precision", "32"),
            "batch_size": model.batch_size, "threshold": post.threshold, "tta": post.tta, "crf": post.crf,
            "crf_params": post.crf_params if post.crf != "off" else None, "score_threshold": post.score_threshold,
            "rle_order": rle.rle_order_code(rle_order),
            "masks_out": os.path.abspath(masks_out) if masks_out else None,
            "probs_out": os.path.abspath(probs_out) if probs_out else None,
            "overlays_out": os.path.abspath(overlays_out) if overlays_out else None,
            **({} if post.gate is None else {"gate": post.gate})}  # part files from before the gate still match


def _finish_image(item: ImageResult, post: PostProcess, order: str, dirs: dict, part, rows: list) -> None:
    """The per-image work after the network (writer thread, overlapping the next batch's forward pass):
    RLE, image score, PNGs (``dirs``: "masks" / "probs" / "overlays" -> folder), then the part file row
    (last: a row means the image's files are complete)."""
    if item.error is not None:
        row = journal.Row(item.stem, error=item.error)
    else:
        if dirs.get("masks"):
            fileio.write_png(dirs["masks"] / f"{item.stem}.png", item.mask * np.uint8(255))
        if dirs.get("probs"):
            fileio.write_png(dirs["probs"] / f"{item.stem}.png", to_png8(item.probs))
        if dirs.get("overlays"):
            from inpaintseg.inference.overlays import write_overlay

            write_overlay(dirs["overlays"] / f"{item.stem}.png", item.path, item.probs, post.threshold)
        score = item.score
        fraction = float(item.mask.mean()) if item.mask.size else 0.0
        row = journal.result_row(item.stem, rle.rle_encode(item.mask, order), score, fraction, post.label(score))
    if part is not None:
        part.append(row)
    rows.append(row)


# Not split further: its body (~40 lines) is the steps in order -- checks, resume, run, merge -- each a helper.
def predict_folder(model, images: str | os.PathLike | Sequence[Path] | ImageInputs,
                   out: str | os.PathLike | None = SUBMISSION_FILE, masks_out=None, probs_out=None,
                   scores_out=None, *, threshold=None, tta=None, crf=None, gate=None, crf_workers: int = 1,
                   progress: bool = True, overlays_out=None, score_threshold=None, rle_order: str = "row",
                   recursive: bool = False, resume: bool = False, shard: tuple[int, int] = (0, 1),
                   merge: bool = True) -> FolderPrediction:
    """Predict every image of a folder (or one file, a glob pattern, a list of paths) and write the outputs.

    ``model`` is an `inpaintseg.InpaintModel` (`inpaintseg.load_model`). Post-processing defaults to what the
    model stored (validation calibration); ``threshold``/``tta``/``crf``/``gate`` override it (None or "auto" =
    stored; ``gate`` also "off", `inference.gate`).
    Writes the RLE submission ``out`` (row-major, sorted by ImageId; None = do not write), optional 0/255 mask
    PNGs (``masks_out``), 8-bit probability PNGs (``probs_out``, value = round(p x 255)) and the image scores
    CSV (``scores_out``). Every write is atomic; output locations are checked before any work.
    ``overlays_out``: heat-map-on-image PNGs at native size (`inference.overlays`); ``score_threshold``: the
    image-level label's threshold (None = the larger of the pixel threshold and the gate); ``rle_order``: "row" (default) or "column".

    Rows are appended to a part file as images finish (`inference.journal`); ``resume=True`` skips the images
    a killed run finished. ``shard=(rank, world)`` predicts only every world-th batch (`inpaintseg.sharding`);
    ``merge=False`` leaves the part file for the caller to merge.
    """
    inputs = as_inputs(images, recursive)
    paths, ids = inputs.paths, inputs.ids
    post = model.postprocess(threshold=threshold, tta=tta, crf=crf, score_threshold=score_threshold, gate=gate)
    if post.crf != "off":
        from inpaintseg.inference.crf import require_pydensecrf

        require_pydensecrf()
    order = rle.rle_order_code(rle_order)
    check_output_paths(out, masks_out, probs_out, scores_out, overlays_out, inputs=paths, folders=inputs.folders,
                       model_dir=getattr(model, "source", None))
    target = journal.part_target(out, scores_out)
    if resume and target is None:
        raise ConfigError("resume needs a submission file or scores_out to continue.",
                          params=["resume", "scores_out"])
    settings = run_settings(model, post, masks_out, probs_out, overlays_out, rle_order)
    result = FolderPrediction(n_images=len(paths), skipped=list(inputs.notes))
    choice = getattr(model, "engine_choice", None)
    result.engine = choice.engine if choice else "torch"
    world = shard[1]
    done = _resume(result, target, settings, ids, resume, world, (masks_out, probs_out, overlays_out))
    dirs = {key: Path(folder) for key, folder in (("masks", masks_out), ("probs", probs_out),
                                                  ("overlays", overlays_out)) if folder}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    predictor = model.predictor(post.tta)
    part = journal.PartWriter(journal.part_path(target, shard[0]), settings) if target is not None else None
    rows = _run(predictor, inputs, post, order, dirs, part, done, shard, crf_workers, progress)
    result.written.update(dirs)
    if merge:
        if world > 1:
            done, failed = journal.load_parts(target, settings)
        else:  # one process: the part file holds exactly the resumed rows and this run's (no need to re-read it)
            done = {**done, **{r.image_id: r for r in rows if not r.error}}
            failed = {r.image_id: r for r in rows if r.error and r.image_id not in done}
        collect_rows(result, inputs, done, failed, out, scores_out, model, post)
        journal.discard_parts(target) if target is not None else None
    return result


def _resume(result: FolderPrediction, target, settings: dict, ids: Sequence[str], resume: bool, world: int,
            folders: tuple) -> dict:
    """The rows an interrupted run finished (resume; {} otherwise), its notes in `result`; a fresh one-process
    run discards an earlier run's part files instead. `folders`: the mask, probability and overlay folders."""
    if not resume:
        if world == 1:
            result.notes += [f"discarded {p} (an earlier run's part file; --resume continues such a run)"
                             for p in journal.discard_parts(target)]
        return {}
    done, failed = journal.load_parts(target, settings)
    current = set(ids)
    done = {k: v for k, v in done.items() if k in current}
    result.resumed = len(done)
    result.notes.append(journal.describe_resume(target, len(done), len(failed), len(ids)))
    # Sharded: rank 0 removes them before any rank writes (a rank's temp file would look stale to another).
    stale = journal.remove_stale_temps(*folders) if world == 1 else 0
    if stale:
        result.notes.append(f"removed {stale} temporary file(s) of a write the interrupted run did not finish")
    return done


def _run(predictor, inputs: ImageInputs, post, order, dirs: dict, part, done: dict, shard: tuple[int, int],
         crf_workers: int, progress: bool) -> list[journal.Row]:
    """Predict this rank's batches that hold an unfinished image; each finished image's files and part-file
    row are written by writer threads beside the next forward pass. Returns this run's rows."""
    paths, ids = inputs.paths, inputs.ids
    rank, world = shard
    batches = [b for k, b in enumerate(plan_batches(len(paths), predictor.batch_size))
               if k % world == rank and any(ids[i] not in done for i in b)]
    rows: list[journal.Row] = []
    try:
        with cf.ThreadPoolExecutor(WRITER_THREADS) as writer:
            writes: list[cf.Future] = []
            for item in predict_paths(predictor, paths, post, crf_workers=crf_workers, progress=progress,
                                      ids=ids, batches=batches):
                if item.stem in done:  # finished by an earlier run: its batch ran again for identical numerics
                    continue
                writes.append(writer.submit(_finish_image, item, post, order, dirs, part, rows))
                writes = _drain(writes, keep=PENDING_WRITES)
            _drain(writes, keep=0)
    finally:
        if part is not None:
            part.close()
    return rows


def collect_rows(result: FolderPrediction, inputs: ImageInputs, done: dict, failed: dict, out, scores_out,
                 model=None, post: PostProcess | None = None) -> None:
    """Write the final sorted files from finished rows (those of current inputs) and fill `result`; with the
    model and its post-processing, each row also gets its calibrated verdict (`InpaintModel.verdict`)."""
    names = {image_id: (image_id + path.suffix if inputs.kind == "recursive" else path.name)
             for image_id, path in zip(inputs.ids, inputs.paths)}
    done = {k: v for k, v in done.items() if k in names}
    result.encoded = {k: row.rle for k, row in sorted(done.items())}
    result.scores = [(k, float(r.score), float(r.fraction), int(r.label)) for k, r in sorted(done.items())]
    if post is not None:
        result.score_threshold = post.image_threshold
    if model is not None and hasattr(model, "verdict"):
        result.verdicts = {k: model.verdict(score, post) for k, score, _, _ in result.scores}
    journal.write_final(out, scores_out, done, scores_text=result.to_csv)
    result.failures = [(names[k], r.error) for k, r in sorted(failed.items()) if k in names and k not in done]
    if out is not None:
        result.written["submission"] = Path(out)
    if scores_out:
        result.written["scores"] = Path(scores_out)


def to_png8(probs: np.ndarray) -> np.ndarray:
    """A probability map as 8-bit grey: value = round(p x 255)."""
    return np.rint(probs * 255.0).astype(np.uint8)
