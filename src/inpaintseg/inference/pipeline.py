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
import io as _stdio
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaintseg import io, rle
from inpaintseg.data.pairing import problems_message, scan_pairs
from inpaintseg.errors import DataError, InpaintsegError
from inpaintseg.inference.crf_pool import CrfRunner
from inpaintseg.inference.postprocess import PostProcess
from inpaintseg.inference.predictor import Predictor
from inpaintseg.metrics import image_score
from inpaintseg.progress import progress_bar

# Listing problems of an images folder that prediction tolerates: stray non-image entries are skipped (and
# named); 0-byte files and broken symbolic links go through like any undecodable image (named at the end).
TOLERATED_PROBLEM_KINDS = ("not_image", "empty_file", "broken_link")
SCORES_HEADER = ("ImageId", "score", "manipulated_fraction", "predicted_label")
PENDING_WRITES = 16


@dataclass
class ImageResult:
    """One image's outcome: ``probs``/``mask`` at the original size, or ``error`` when it failed."""

    stem: str
    path: Path
    probs: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None


@dataclass
class FolderPrediction:
    """What `predict_folder` did: rows written, files written, images that failed (name, message)."""

    n_images: int
    encoded: dict[str, str] = field(default_factory=dict)  # stem -> RLE, as in the submission
    scores: list[tuple[str, float, float, int]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # notes on folder entries that are not images
    written: dict[str, Path] = field(default_factory=dict)  # "submission" | "masks" | "probs" | "scores"


def list_images(images_dir: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Image files of a folder sorted by stem, and notes on skipped entries; DataError when unusable."""
    images_dir = Path(images_dir)
    scan = scan_pairs(images_dir)
    fatal = [p for p in scan.problems if p.kind not in TOLERATED_PROBLEM_KINDS]
    if fatal:
        raise DataError(problems_message(fatal))
    if not scan.samples:
        raise DataError(f"{images_dir}: no image files to predict (supported: {', '.join(io.IMAGE_EXTENSIONS)}). "
                        "Point --images at the folder that holds the test images.")
    notes = [p.message() for p in scan.problems if p.kind == "not_image"]
    broken = [p for p in scan.broken if io.is_image_file(p)]  # named as failures when read
    return sorted([s.image_path for s in scan.samples] + broken, key=lambda p: (p.stem, p.name)), notes


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return io.read_image(path), None
    except InpaintsegError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{path}: not enough memory to decode this image. Downscale it or lower --max-pixels."


def predict_paths(predictor: Predictor, paths: Sequence[Path], post: PostProcess, crf_workers: int = 1,
                  progress: bool = True, keep_probs: bool = True) -> Iterator[ImageResult]:
    """Predict image files in order, yielding one ``ImageResult`` per path (failures included)."""
    batch_size = predictor.batch_size
    batches = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    crf_runner = CrfRunner(post.crf_params, crf_workers) if post.crf != "off" else None
    bar = progress_bar(len(paths), "predicting", progress)
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
                    result.mask = post.binarize(probs)
                    result.probs = probs if keep_probs else None
            bar.update(1)
            yield result

    try:
        with cf.ThreadPoolExecutor(1) as decoder:
            next_decoded = decoder.submit(lambda b: [_read(p) for p in b], batches[0]) if batches else None
            for index, batch in enumerate(batches):
                decoded = next_decoded.result()
                if index + 1 < len(batches):
                    next_decoded = decoder.submit(lambda b: [_read(p) for p in b], batches[index + 1])
                good_probs = iter(predictor.predict_proba_batch([img for img, _ in decoded if img is not None]))
                current = []
                for p, (img, err) in zip(batch, decoded):
                    result = ImageResult(stem=p.stem, path=p, error=err)
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


def scores_csv(rows: Sequence[tuple[str, float, float, int]]) -> str:
    """The scores file: ImageId,score,manipulated_fraction,predicted_label, sorted by ImageId."""
    buffer = _stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCORES_HEADER)
    for stem, score, fraction, label in sorted(rows):
        writer.writerow((stem, f"{score:.6f}", f"{fraction:.6f}", label))
    return buffer.getvalue()


def check_output_paths(out=None, masks_out=None, probs_out=None, scores_out=None, overlays_out=None,
                       inputs: Sequence[Path] = ()) -> None:
    """Fail before any work when an output cannot be written or lies in an input folder: a CSV path that is a
    folder, a PNG folder path that is a file, an unwritable location, or an output inside the folder of one
    of the `inputs` image paths (or its truth masks beside it, in the dataset layout)."""
    from inpaintseg.outputs import check_output_dir, check_output_file, input_folders

    folders = input_folders(*sorted({Path(p).parent for p in inputs}))
    for flag, value in (("--submission", out), ("--scores-out", scores_out)):
        check_output_file(value, flag, folders)
    for flag, value in (("--masks-out", masks_out), ("--probs-out", probs_out), ("--overlays-out", overlays_out)):
        check_output_dir(value, flag, folders)


def _drain(writes: list, keep: int) -> list:
    """Re-raise errors of finished writes; wait until at most `keep` are pending (bounds memory)."""
    while len(writes) > keep:
        writes.pop(0).result()
    for w in [w for w in writes if w.done()]:
        w.result()
    return [w for w in writes if not w.done()]


def predict_folder(model, images: str | os.PathLike | Sequence[Path], out: str | os.PathLike | None = "submission.csv",
                   masks_out=None, probs_out=None, scores_out=None, *, threshold=None, tta=None, crf=None,
                   crf_workers: int = 1, progress: bool = True, overlays_out=None, score_threshold=None,
                   rle_order: str = "row") -> FolderPrediction:
    """Predict every image of a folder (or a list of paths) with a loaded model and write the outputs.

    ``model`` is an `inpaintseg.InpaintModel` (`inpaintseg.load_model`). Post-processing defaults to what the
    model stored (validation calibration); ``threshold``/``tta``/``crf`` override it (None or "auto" = stored).
    Writes the RLE submission ``out`` (row-major, sorted by ImageId; None = do not write), optional 0/255 mask
    PNGs (``masks_out``), 8-bit probability PNGs (``probs_out``, value = round(p x 255)) and the image scores
    CSV (``scores_out``). Every write is atomic; output locations are checked before any work.
    ``overlays_out``: heat-map-on-image PNGs at native size (`inference.overlays`); ``score_threshold``: the
    image-level label's threshold (None = the pixel threshold); ``rle_order``: "row" (default) or "column".
    """
    if isinstance(images, (str, os.PathLike)):
        paths, skipped = list_images(images)
    else:
        paths, skipped = [Path(p) for p in images], []
    post = model.postprocess(threshold=threshold, tta=tta, crf=crf, score_threshold=score_threshold)
    if post.crf != "off":
        from inpaintseg.inference.crf import require_pydensecrf

        require_pydensecrf()
    order = rle.rle_order_code(rle_order)
    check_output_paths(out, masks_out, probs_out, scores_out, overlays_out, inputs=paths)
    result = FolderPrediction(n_images=len(paths), skipped=skipped)
    masks_dir = Path(masks_out) if masks_out else None
    probs_dir = Path(probs_out) if probs_out else None
    overlays_dir = Path(overlays_out) if overlays_out else None
    for folder in (masks_dir, probs_dir, overlays_dir):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)

    predictor = model.predictor(post.tta)
    with cf.ThreadPoolExecutor(1) as writer:
        writes: list[cf.Future] = []
        for item in predict_paths(predictor, paths, post, crf_workers=crf_workers, progress=progress):
            if item.error is not None:
                result.failures.append((item.path.name, item.error))
                continue
            result.encoded[item.stem] = rle.rle_encode(item.mask, order)
            score = image_score(item.probs)
            fraction = float(item.mask.mean()) if item.mask.size else 0.0
            result.scores.append((item.stem, score, fraction, post.label(score)))
            if masks_dir:
                writes.append(writer.submit(io.write_png, masks_dir / f"{item.stem}.png", item.mask * np.uint8(255)))
            if probs_dir:
                writes.append(writer.submit(io.write_png, probs_dir / f"{item.stem}.png", to_png8(item.probs)))
            if overlays_dir:
                from inpaintseg.inference.overlays import write_overlay

                writes.append(writer.submit(write_overlay, overlays_dir / f"{item.stem}.png", item.path, item.probs,
                                            post.threshold))
            writes = _drain(writes, keep=PENDING_WRITES)
        _drain(writes, keep=0)

    if out is not None:
        rle.write_submission(out, result.encoded)
        result.written["submission"] = Path(out)
    if masks_dir:
        result.written["masks"] = masks_dir
    if probs_dir:
        result.written["probs"] = probs_dir
    if overlays_dir:
        result.written["overlays"] = overlays_dir
    if scores_out:
        io.atomic_write_text(scores_out, scores_csv(result.scores))
        result.written["scores"] = Path(scores_out)
    return result


def to_png8(probs: np.ndarray) -> np.ndarray:
    """A probability map as 8-bit grey: value = round(p x 255)."""
    return np.rint(probs * 255.0).astype(np.uint8)
