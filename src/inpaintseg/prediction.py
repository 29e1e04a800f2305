"""A folder prediction as `inpaintseg predict` runs it: every check before any work, then the run.

    plan = plan_prediction("runs/x/model", "test/images", out="submission.csv", masks_out="pred_masks")
    print(plan.post.describe())          # what will be used, before anything is predicted
    result = plan.run()                  # a FolderPrediction (None on a node other than 0)

`plan_prediction` checks the counts against this machine and the node layout, resumes ``precision="auto"`` at
the interrupted run's precision, loads the model, resolves the images, the post-processing and the output
locations (all before a single image is predicted) and tunes the CPU runtime for one process.
`PredictionPlan.run` predicts with `predict_folder`, or `predict_sharded` for several processes. Errors name
the parameters (`InpaintsegError.params`), which the CLI prints as its flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from inpaintseg.errors import ConfigError
from inpaintseg.inference.pipeline import SUBMISSION_FILE
from inpaintseg.inference.predictor import DEFAULT_BATCH_SIZE


@dataclass
class PredictionPlan:
    """A checked prediction: the loaded `model`, the resolved `inputs` (`ImageInputs`), the post-processing
    `post`, the keyword `options` of `predict_folder`, the process layout and the CPU tuning applied
    (`runtime`: {"malloc", "threads"}, empty when not tuned)."""

    model: Any
    inputs: Any
    post: Any
    options: dict
    num_devices: int = 1
    num_nodes: int = 1
    node_rank: int = 0
    threads: int | None = None
    runtime: dict = field(default_factory=dict)

    @property
    def processes(self) -> int:
        return self.num_devices * self.num_nodes

    def run(self):
        """Predict every image; the `FolderPrediction`, or None on a node other than 0 of a sharded run."""
        if self.processes > 1:
            from inpaintseg.sharding import predict_sharded

            return predict_sharded(self.model, self.inputs, devices=self.num_devices, num_nodes=self.num_nodes,
                                   node_rank=self.node_rank, threads=self.threads, **self.options)
        from inpaintseg.inference.pipeline import predict_folder

        return predict_folder(self.model, self.inputs, **self.options)


def check_node_rank(num_nodes: int, node_rank: int) -> None:
    """ConfigError unless ``0 <= node_rank < num_nodes``."""
    if not 0 <= node_rank < num_nodes:
        raise ConfigError(f"node_rank must lie in 0..{num_nodes - 1} for num_nodes {num_nodes}, got {node_rank}.",
                          params=["node_rank", "num_nodes"])


def plan_prediction(model_dir: str | os.PathLike, images, *, out=SUBMISSION_FILE, masks_out=None, probs_out=None,
                    scores_out=None, overlays_out=None, threshold="auto", tta="auto", crf="auto",
                    gate="auto", score_threshold="auto", rle_order: str = "row", resume: bool = False, crf_workers: int = 1,
                    device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "auto",
                    engine: str = "auto", recursive: bool = False, threads: int | None = None,
                    num_devices: int = 1, num_nodes: int = 1, node_rank: int = 0) -> PredictionPlan:
    """Check everything a prediction needs and load what it uses; nothing is predicted or written yet.

    ``model_dir`` and ``device``/``batch_size``/``precision``/``engine`` as `inpaintseg.load_model`; ``images``
    a folder, a file or a glob pattern (``recursive``: sub-folders too); the outputs and post-processing as
    `inpaintseg.predict_folder`; ``threads``: torch CPU threads of one process; ``num_devices`` x
    ``num_nodes`` processes share the images (`inpaintseg.sharding`)."""
    from inpaintseg.api import load_model
    from inpaintseg.inference import journal
    from inpaintseg.inference.inputs import resolve_images
    from inpaintseg.inference.pipeline import check_output_paths
    from inpaintseg.runtime import check_count, tune_cpu_runtime

    check_count("threads", threads)
    check_count("crf_workers", crf_workers, processes=True)
    check_node_rank(num_nodes, node_rank)
    if resume:  # `auto` resumes at the interrupted run's precision
        precision = journal.resumed_precision(journal.part_target(out, scores_out), precision)
    model = load_model(model_dir, device=device, batch_size=batch_size, precision=precision, engine=engine)
    inputs = resolve_images(images, recursive=recursive)
    post = model.postprocess(threshold=threshold, tta=tta, crf=crf, score_threshold=score_threshold, gate=gate)
    check_output_paths(out, masks_out, probs_out, scores_out, overlays_out, inputs=inputs.paths,
                       folders=inputs.folders, model_dir=model_dir)
    single = num_devices * num_nodes == 1
    runtime = tune_cpu_runtime(threads) if model.device == "cpu" and single else {}
    options = dict(out=out, masks_out=masks_out, probs_out=probs_out, scores_out=scores_out, threshold=threshold,
                   tta=tta, crf=crf, gate=gate, crf_workers=crf_workers, overlays_out=overlays_out,
                   score_threshold=score_threshold, rle_order=rle_order, resume=resume)
    return PredictionPlan(model, inputs, post, options, num_devices=num_devices, num_nodes=num_nodes,
                          node_rank=node_rank, threads=threads, runtime=runtime)
