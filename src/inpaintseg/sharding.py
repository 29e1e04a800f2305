"""Many processes: `predict --num-devices N [--num-nodes M]` shards a folder over N x M ranks.

The launcher (one per node) starts N local ranks (``spawn``); each joins a gloo process group (gloo works on
CPU and GPU machines alike; only barriers go through it), loads the model on its device (``cuda:<local
rank>`` on GPUs, else the CPU with its share of the cores), and predicts every world-th batch of the ONE
sorted list of images (`pipeline.plan_batches`: the batches one process would run, so the probabilities are
the same) into its own part file ``<out>.part<rank>`` (`inference.journal`). After a barrier across all
ranks, the launcher on node 0 merges every part file into the sorted submission and scores files (the same
merge that ends a one-process run) and removes the part files.

Several nodes: run the same command on every node with ``--node-rank`` (or $NODE_RANK) 0..M-1 and
$MASTER_ADDR/$MASTER_PORT naming node 0 (as torchrun and Lightning do); every output path must be on a
filesystem all nodes share. ``resume`` works as in one process: every rank skips the images any part file
already holds, whatever the previous number of ranks was.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta

from inpaintseg.errors import ConfigError, InpaintsegError
from inpaintseg.inference import journal
from inpaintseg.inference.inputs import ImageInputs

BARRIER_TIMEOUT = timedelta(days=7)  # ranks wait for the slowest one at the end; a dead peer fails fast anyway
EXIT_RANK_ERROR = 2


@dataclass
class ShardJob:
    """What every rank needs (pickled to the spawned processes)."""

    model_dir: str
    device: str  # "cpu" or "cuda"
    engine: str  # resolved: "torch" | "onnx" | "onnx-int8"
    precision: str  # resolved ("32", "bf16-mixed", "16-mixed"): ranks do not probe again
    batch_size: int
    images: ImageInputs
    outputs: dict  # out, masks_out, probs_out, scores_out, overlays_out
    post: dict  # threshold, tta, crf, score_threshold, rle_order
    crf_workers: int
    resume: bool
    devices: int
    num_nodes: int
    node_rank: int
    master_addr: str
    master_port: str
    threads: int | None
    progress: bool
    progress_mode: str  # `inpaintseg.progress` mode of the launcher (spawned ranks start with the default)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(local_rank: int, job: ShardJob) -> None:
    import torch.distributed as dist

    from inpaintseg.api import load_model
    from inpaintseg.inference.pipeline import predict_folder
    from inpaintseg.progress import set_progress_mode
    from inpaintseg.runtime import available_cpus, tune_cpu_runtime

    rank = job.node_rank * job.devices + local_rank
    world = job.devices * job.num_nodes
    os.environ.update(MASTER_ADDR=job.master_addr, MASTER_PORT=str(job.master_port))
    set_progress_mode(job.progress_mode)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=BARRIER_TIMEOUT)
        target = journal.part_target(job.outputs["out"], job.outputs["scores_out"])
        if rank == 0:  # before any rank writes: the barrier below orders it
            if job.resume:
                journal.remove_stale_temps(job.outputs["masks_out"], job.outputs["probs_out"],
                                           job.outputs["overlays_out"])
            else:
                journal.discard_parts(target)
        dist.barrier()
        device = f"cuda:{local_rank}" if job.device.startswith("cuda") else "cpu"
        if device == "cpu":
            tune_cpu_runtime(job.threads or max(1, available_cpus() // job.devices))
        model = load_model(job.model_dir, device=device, batch_size=job.batch_size, engine=job.engine,
                           precision=job.precision)
        predict_folder(model, job.images, **job.outputs, **job.post, crf_workers=job.crf_workers,
                       progress=job.progress and rank == 0, resume=job.resume, shard=(rank, world), merge=False)
        dist.barrier()
        dist.destroy_process_group()
    except InpaintsegError as exc:
        print(f"predict: rank {rank}: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_RANK_ERROR)


def check_topology(devices: int, num_nodes: int, node_rank: int, device: str) -> tuple[str, str]:
    """(master address, port) for the process group, or ConfigError for an impossible layout."""
    if devices < 1 or num_nodes < 1:
        raise ConfigError(f"devices and num_nodes must be >= 1, got {devices} and {num_nodes}.",
                          params=["devices", "num_nodes"])
    if not 0 <= node_rank < num_nodes:
        raise ConfigError(f"node_rank must lie in 0..{num_nodes - 1} for num_nodes {num_nodes}, got {node_rank}.",
                          params=["node_rank", "num_nodes"])
    if device.startswith("cuda"):
        import torch

        if devices > torch.cuda.device_count():
            raise ConfigError(f"devices {devices}: this node has {torch.cuda.device_count()} CUDA GPU(s). "
                              "Lower devices.", params=["devices"])
    else:  # CPU processes: bounded by the cores and memory (--num-devices 1000 once spawned hundreds)
        from inpaintseg.runtime import check_count

        check_count("devices", devices, processes=True)
    if num_nodes == 1:
        return "127.0.0.1", str(free_port())
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ConfigError(f"num_nodes {num_nodes} needs {' and '.join(missing)} in the environment on every node "
                          "(node 0's address and a free port), as torchrun and Lightning use.", params=["num_nodes"])
    return os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]


def predict_sharded(model, images: ImageInputs, out=None, masks_out=None, probs_out=None, scores_out=None, *,
                    devices: int, num_nodes: int = 1, node_rank: int = 0, threshold=None, tta=None, crf=None, gate=None,
                    crf_workers: int = 1, resume: bool = False, threads: int | None = None,
                    progress: bool = True, overlays_out=None, score_threshold=None, rle_order: str = "row"):
    """Predict `images` with devices x num_nodes processes; on node 0 returns the merged `FolderPrediction`
    (the same files and rows as one process), on other nodes None. ``model`` is the launcher's loaded
    `InpaintModel` (its folder, device, engine and batch size are what every rank loads)."""
    from inpaintseg import rle
    from inpaintseg.inference.pipeline import check_output_paths, run_settings
    from inpaintseg.progress import get_progress_mode

    if model.source is None:
        raise ConfigError("sharded prediction loads the model in every process: pass a model loaded from a folder.")
    target = journal.part_target(out, scores_out)
    if target is None:
        # `out` is --submission on the command line: named in words, since flag_message maps names one to one
        raise ConfigError("devices > 1 needs a submission file or scores_out: the ranks merge through part files "
                          "beside it.", params=["devices", "scores_out"])
    post = model.postprocess(threshold=threshold, tta=tta, crf=crf, score_threshold=score_threshold, gate=gate)
    if post.crf != "off":
        from inpaintseg.inference.crf import require_pydensecrf

        require_pydensecrf()
    rle.rle_order_code(rle_order)  # a bad order: an error now, in the launcher
    check_output_paths(out, masks_out, probs_out, scores_out, overlays_out, inputs=images.paths,
                       folders=images.folders, model_dir=model.source)
    settings = run_settings(model, post, masks_out, probs_out, overlays_out, rle_order)
    if resume:
        journal.load_parts(target, settings)  # settings mismatch: an error now, in the launcher
    addr, port = check_topology(devices, num_nodes, node_rank, str(model.device))
    job = ShardJob(str(model.source), str(model.device), model.engine_choice.engine, model.precision,
                   model.batch_size, images,
                   {"out": out, "masks_out": masks_out, "probs_out": probs_out, "scores_out": scores_out,
                    "overlays_out": overlays_out},
                   {"threshold": threshold, "tta": tta, "crf": crf, "gate": gate, "score_threshold": score_threshold,
                    "rle_order": rle_order},
                   crf_workers, resume, devices, num_nodes, node_rank, addr, port, threads, progress,
                   get_progress_mode())
    _spawn_ranks(job)
    if node_rank != 0:
        return None
    return _merge_parts(model, images, job, target, settings, post)


def _spawn_ranks(job: ShardJob) -> None:
    """Run this node's ranks to the end; a rank's failure is one InpaintsegError (finished rows stay in the
    part files)."""
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_rank_main, args=(job,), nprocs=job.devices, join=True, start_method="spawn")
    except mp.ProcessExitedException as exc:
        raise InpaintsegError(f"rank process failed (exit status {exc.exit_code}; its message is above). Finished "
                              "rows are kept in the part files: run again with resume to continue.",
                              params=["resume"]) from None
    except mp.ProcessRaisedException as exc:
        raise InpaintsegError(f"a rank process failed:\n{exc}\nFinished rows are kept in the part files: run again "
                              "with resume to continue.", params=["resume"]) from None


def _merge_parts(model, images: ImageInputs, job: ShardJob, target, settings: dict, post):
    """Node 0, after every rank: the part files merged into the outputs (as one process writes them), the
    `FolderPrediction` returned, the part files removed."""
    from pathlib import Path

    from inpaintseg.inference.pipeline import FolderPrediction, collect_rows

    outputs = job.outputs
    result = FolderPrediction(n_images=len(images.paths), skipped=list(images.notes), engine=job.engine)
    done, failed = journal.load_parts(target, settings)
    collect_rows(result, images, done, failed, outputs["out"], outputs["scores_out"], model, post)
    for key in ("masks", "probs", "overlays"):
        if outputs[f"{key}_out"]:
            result.written[key] = Path(outputs[f"{key}_out"])
    journal.discard_parts(target)
    return result
