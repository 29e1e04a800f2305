"""The recipe of the shipped `base` detector: engine data -> training chunk -> scores -> (optional) install.

One command re-creates the weights (README "The base model"):

    python recipes/base.py --work /tmp/base --budget-minutes 120              # chunk 1, from random init
    python recipes/base.py --work /tmp/base --budget-minutes 120 --init-from base --install   # every later chunk

Each call is one *chunk*: it generates the engine data (or reuses it when WORK/data was written with the same
arguments), trains `configs/base.yaml` for a wall-clock budget (the epochs are sized by measurement so the cosine
schedule completes, as the demo does; `--init-from` restarts the schedule from earlier weights), scores the result
on a fresh engine test set (another seed) next to the all-empty / all-full baselines and on the untouched photos,
and records everything that made the weights in the model's config.json under "recipe": engine version and
arguments, photo sources (with a SHA-256 per photo folder listing), seeds, steps, images seen, machine, wall time,
and the list of earlier chunks. `--install` copies the model into the package (src/inpaintseg/weights/base/) only
when its fresh-test Dice beats the installed one's without more false alarms on the untouched test photos than
the target (10 %) and the installed one's (`install_decision`), so the repository keeps the best weights only.

`--exclude-families F` trains a variant whose training data lacks family F (the test sets keep it), for measuring
fine-tuning on a family the start never saw; a variant is never installed. `--camera-noise P` and `--fill-noise S`
pass the engine's options of those names to the training data only (the test sets stay the default mix, so chunks
compare).

`--tiny` runs the same code path in about a minute (CI's test of the recipe); it never installs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "base.yaml"
# Debian packages holding photographs (apt-get install mate-backgrounds lomiri-wallpapers-16.04
# lomiri-wallpapers-20.04): (package, folder, the files that are photographs; None = every file). Their other
# files, and gnome-backgrounds / ukui-wallpapers, are renders and illustrations: no camera noise to learn from.
MATE_PHOTOS = Path("/usr/share/backgrounds/mate/nature")
DEBIAN_PHOTOS = (
    ("mate-backgrounds", MATE_PHOTOS, None),
    ("lomiri-wallpapers-16.04", Path("/usr/share/backgrounds"), (
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
        "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
        "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg")),
    ("lomiri-wallpapers-20.04", Path("/usr/share/backgrounds"), ("Kleiber_by_Lukas_Baubkus.jpg",)),
)
DATA_SEED, TEST_SEED, VERDICT_SEED = 22, 2022, 3033
VERDICT_IMAGES = 600  # held-out engine images for the verdict levels: ~60 untouched (75 validation images hold ~8)


def log(message: str) -> None:
    print(f"recipe: {message}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                isa = "AVX-512-BF16" if "avx512_bf16" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores, {isa})"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} + {cpu_name()}"
    return cpu_name()


def debian_photos(work: Path) -> list[Path]:
    """Folders of the installed DEBIAN_PHOTOS: a package folder as it is when every file is a photograph, else
    WORK/photos/<package>/ holding links to the named photographs only (their folder also holds renders)."""
    folders = []
    for package, folder, names in DEBIAN_PHOTOS:
        if names is None:
            folders += [folder] if folder.is_dir() else []
            continue
        present = [folder / name for name in names if (folder / name).is_file()]
        if not present:
            continue
        linked = work / "photos" / package
        if linked.exists():
            shutil.rmtree(linked)
        linked.mkdir(parents=True)
        for path in present:
            (linked / path.name).symlink_to(path)
        folders.append(linked)
    return folders


def photo_sources(folders: list[Path]) -> list[dict]:
    """What the pristine photos were: the packaged ones, and each photo folder's files with their SHA-256
    and the Debian package they came from."""
    sources = [{"source": "packaged (scikit-image, scikit-learn, matplotlib, PyWavelets sample photos)"}]
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        sources.append({"source": str(folder), "files": [p.name for p in files], "sha256": digest.hexdigest(),
                        "package": _debian_package(files[0].resolve()) if files else None})
    return sources


def _debian_package(path: Path) -> str | None:
    try:
        out = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    name = out.stdout.split(":", 1)[0].strip()
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
    return f"{name} {version.stdout.strip()}".strip()


def make_data(folder: Path, engine_args: dict, log_fn=log) -> dict:
    """Generate the engine data, or reuse `folder` when it was written with the same arguments."""
    from inpaintseg.synth import generate_demo_data

    stamp = folder / "recipe-data.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == engine_args:
        log_fn(f"reusing {folder} (written with the same engine arguments)")
        return engine_args
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    args = dict(engine_args)
    args.pop("engine_format_version", None)  # recorded so data of another engine version is never reused
    photos = args.pop("photos_dir")
    generate_demo_data(folder, photos_dir=photos, log=log_fn, **args)
    stamp.write_text(json.dumps(engine_args, indent=2))
    log_fn(f"data in {folder}: {time.perf_counter() - started:.0f} s")
    return engine_args


def score_fresh(model_dir: Path, test_dir: Path, out: Path) -> dict:
    """Scores on a fresh engine test set, as the model card measures them (base_card.fresh_rows: Dice next to
    the baselines, AUCs, per family and method, rounded to 4 digits; "untouched": the untouched images'
    false-alarm rate and FP area at the stored post-processing)."""
    from base_card import fresh_rows  # recipes/ is the script's folder, so on sys.path

    from inpaintseg.api import load_model

    row, untouched = fresh_rows(load_model(model_dir, device="cpu"), test_dir, out)
    return {**row, "untouched": untouched}


def install_decision(new: dict, old: dict | None) -> tuple[bool, str]:
    """Whether a chunk's model replaces the installed one, from both models' `score_fresh` on the same fresh
    test set: only when its Dice is higher and its untouched false-alarm rate stays within the issue's target
    (`inference.gate.FALSE_ALARM_TARGET`) or at most the installed model's. A higher Dice bought with more
    false alarms on untouched photos is not an improvement of the card."""
    from inpaintseg.inference.gate import FALSE_ALARM_TARGET

    if old is None:
        return True, "nothing installed"
    dice, old_dice = new["dice_mean"], old["dice_mean"]
    alarms, old_alarms = new["untouched"]["false_alarm_rate"], old["untouched"]["false_alarm_rate"]
    summary = (f"fresh-test Dice {dice:.4f} vs installed {old_dice:.4f}, untouched flagged {alarms:.1%} vs "
               f"{old_alarms:.1%} (target <= {FALSE_ALARM_TARGET:.0%})")
    if dice <= old_dice:
        return False, summary + ": Dice not higher"
    if alarms > max(FALSE_ALARM_TARGET, old_alarms):
        return False, summary + ": more false alarms than the target and the installed model"
    return True, summary


def _photo_args(folders: list[Path]) -> dict:
    """The engine's photo arguments: the packaged photos, plus these folders (pooled). One folder is written as
    a string, as the chunks before several folders were recorded (so their data stamps still match)."""
    if not folders:
        return {"photos_dir": None, "packaged_photos": None}
    names = [str(f) for f in folders]
    return {"photos_dir": names[0] if len(names) == 1 else names, "packaged_photos": True}


def image_decisions(model_dir: Path, folder: Path) -> dict:
    """Measure the image-level decisions on a held-out engine set, larger than the validation split (about 60
    untouched images instead of 8-24), and store them in the model's config.json: the verdict levels
    (postprocess.verdicts) and the image gate with the threshold chosen together with it (postprocess.gate,
    .threshold, .calibration.gate; `inference.gate`) at the stored TTA and CRF, and the gate of every other TTA
    row of the calibration table (without CRF), so `--tta none` gets the gate measured for it. Returns
    {"verdicts": ..., "gate": ..., "rows": {tta: gate record}}."""
    from inpaintseg.api import load_model
    from inpaintseg.inference.calibration import DEFAULT_MARGIN
    from inpaintseg.inference.gate import FALSE_ALARM_TARGET, calibrate_gate, folder_curves_many, table_fields
    from inpaintseg.inference.verdicts import calibrate_verdicts
    from inpaintseg.model.io import update_model_config
    from inpaintseg.model.model_config import thawed

    model = load_model(model_dir, device="cpu")
    post = model.config.postprocess
    stored = (post.tta or "none", post.crf or "off")
    calibration = thawed(post.calibration) or {}
    table = calibration.get("table") or []
    pairs = [stored] + sorted({(r["tta"], "off") for r in table if r.get("crf") == "off"} - {stored})
    source = (f"{{n}} held-out engine images (data seed {VERDICT_SEED}), not the validation split; "
              "model_dice and baselines on the same images")
    records = {}
    measured = folder_curves_many(model, folder, pairs)  # the views the TTA modes share run once
    for pair, (curves, scored) in measured.items():
        records[pair] = calibrate_gate(curves, scored, DEFAULT_MARGIN, FALSE_ALARM_TARGET) | {
            "source": source.format(n=len(scored))}
    stored_scored = measured[stored][1]
    gate = records[stored]
    for row in table:
        if (row.get("tta"), row.get("crf")) in records:
            row.update(table_fields(records[(row["tta"], row["crf"])]))
    calibration["table_gates"] = f"gate columns of the rows without CRF: {gate['source']}"
    verdicts = calibrate_verdicts(stored_scored, gate["dice"]) | {"source": gate["source"]}
    update_model_config(model_dir, {"postprocess": {"verdicts": verdicts, "gate": gate["gate"],
                                                    "threshold": gate["threshold"],
                                                    "calibration": {**calibration, "gate": gate}}})
    return {"verdicts": verdicts, "gate": gate, "rows": {tta: r for (tta, _), r in records.items()}}


def _row_gates(rows: dict) -> str:
    return "; ".join(f"tta {tta}: gate {r['gate']} threshold {r['threshold']} Dice {r['dice']} "
                     f"(no gate {r['without_gate']['dice']})" for tta, r in rows.items())


def _gate_summary(gate: dict) -> dict:
    return {k: gate[k] for k in ("gate", "threshold", "dice", "without_gate", "false_alarm_target_gate")}


def portable(text: str, work: Path) -> str:
    """`text` with this run's work folder written WORK (a command or path recorded in config.json)."""
    return str(text).replace(str(work.resolve()), "WORK").replace(str(work), "WORK")


def installed_scores(package_dir: Path, test_dir: Path, out: Path) -> dict | None:
    """The installed model's `score_fresh` on this chunk's fresh test set: the numbers its config records may
    come from another engine version's test set, so the comparison is re-measured on the same images."""
    if not (package_dir / "config.json").is_file():
        return None
    return score_fresh(package_dir, test_dir, out)


def training_options(args: argparse.Namespace) -> dict:
    """The engine options that change the training data only, each only when given: the data stamps and
    records of the chunks before an option existed still match."""
    options = {"exclude_families": args.exclude_families, "camera_noise": args.camera_noise,
               "fill_noise": args.fill_noise}
    return {name: value for name, value in options.items() if value is not None}


def engine_settings(args: argparse.Namespace, photos: list[Path], test_photos: list[Path]) -> tuple[dict, dict, dict]:
    """The engine arguments of the training data, the fresh test set and the held-out decisions set. A
    variant's `--exclude-families` leaves its training data only: the test sets keep the default mix, so the
    excluded family's rows show what the variant does on a family it never saw."""
    from inpaintseg.synth.engine import FORMAT_VERSION

    n_train, n_test, size = (48, 16, 64) if args.tiny else (args.n_train, args.n_test, 256)
    common = {"size": size, "generators": "tiny" if args.tiny else "demo", "workers": args.workers,
              "engine_format_version": FORMAT_VERSION}
    engine = {"n_train": n_train, "n_test": 8 if args.tiny else 200, **common, "seed": args.data_seed,
              **_photo_args(photos)}
    engine.update(training_options(args))
    fresh = {"n_train": 1, "n_test": n_test, **common, "seed": TEST_SEED, **_photo_args(test_photos)}
    held_out = {**fresh, "n_test": 24 if args.tiny else VERDICT_IMAGES, "seed": VERDICT_SEED}
    return engine, fresh, held_out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="work folder: data/, test/, run/, score/")
    p.add_argument("--epochs", type=int, default=10,
                   help="epochs of this chunk; the cosine schedule spans them (default 10)")
    p.add_argument("--budget-minutes", type=float, default=120.0,
                   help="training stops after this many minutes even if the epochs are not done (default 120)")
    p.add_argument("--init-from", default=None, metavar="MODEL_DIR|base",
                   help="continue from these weights (a new chunk; the schedule restarts)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of this chunk (default: configs/base.yaml's, 2e-3); a later chunk may "
                   "restart lower, as fine-tuning does (5e-4)")
    p.add_argument("--n-train", type=int, default=2500, help="engine training images (default 2500)")
    p.add_argument("--data-seed", type=int, default=DATA_SEED,
                   help=f"engine seed of the training data (default {DATA_SEED}); a new seed per chunk shows the "
                   "network new images")
    p.add_argument("--n-test", type=int, default=300, help="fresh engine test images (default 300)")
    p.add_argument("--photos", type=Path, nargs="+", default=None, metavar="DIR",
                   help="extra pristine photos of the training data, one or more folders (default: the "
                   "photographs of the Debian packages installed of " + ", ".join(p for p, _, _ in DEBIAN_PHOTOS)
                   + "; apt-get install them)")
    p.add_argument("--test-photos", type=Path, nargs="+", default=[MATE_PHOTOS] if MATE_PHOTOS.is_dir() else None,
                   metavar="DIR", help=f"extra pristine photos of the fresh test and held-out sets (default "
                   f"{MATE_PHOTOS} when installed: the pool every chunk's test set used, so chunks compare)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="data engine processes")
    p.add_argument("--exclude-families", metavar="F,G", default=None,
                   help="train a *variant* without these engine families (for measuring fine-tuning on a family "
                   "the start never saw, README 'The base model'); the test sets keep every family; never "
                   "installed")
    p.add_argument("--camera-noise", type=float, default=None, metavar="P",
                   help="share of training photos given a camera's sensor noise before the edit (demo-data "
                   "--camera-noise; default: the engine's, none); the test sets keep the default mix")
    p.add_argument("--fill-noise", type=float, default=None, metavar="S",
                   help="multiplier of the probability that a training fill gets noise re-injected (demo-data "
                   "--fill-noise; default: the engine's, 1); the test sets keep the default mix")
    p.add_argument("--install", action="store_true",
                   help="copy the model into src/inpaintseg/weights/base when it beats the installed one (higher "
                   "fresh-test Dice, untouched false alarms within 10 %% or the installed one's)")
    p.add_argument("--tiny", action="store_true", help="tiny settings (the CI test of this recipe); never installs")
    p.add_argument("--decisions-only", metavar="MODEL_DIR", default=None,
                   help="only (re)measure the image decisions of this model folder (verdict levels, image gate "
                   "and its threshold) on the held-out set, store them in its config.json, then stop")
    args = p.parse_args(argv)
    options = training_options(args)
    if options:
        from inpaintseg.errors import InpaintsegError
        from inpaintseg.synth import EngineSettings

        try:
            EngineSettings(**options)
        except InpaintsegError as exc:
            message = str(exc)
            for name in options:
                message = message.replace(name, "--" + name.replace("_", "-"))
            p.error(message)
    if args.lr is not None and not 0 < args.lr <= 10:
        p.error(f"--lr must lie in (0, 10], got {args.lr}")
    if args.exclude_families is not None and args.install:
        p.error("--install with --exclude-families: a variant without a family is never the shipped base; "
                "drop --install (the variant stays in WORK/run/model)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from inpaintseg.config import load_config
    from inpaintseg.model.io import update_model_config
    from inpaintseg.model.shipped import SHIPPED_ROOT, resolve_model_dir
    from inpaintseg.synth.engine import FORMAT_VERSION, GENERATOR
    from inpaintseg.training import train

    started = time.perf_counter()
    work = args.work
    photos = [] if args.tiny else (debian_photos(work) if args.photos is None else args.photos)
    test_photos = [] if args.tiny else (args.test_photos or [])
    engine, fresh, held_out = engine_settings(args, photos, test_photos)
    n_train = engine["n_train"]
    if args.decisions_only is not None:
        make_data(work / "verdict_data", held_out)
        decisions = image_decisions(resolve_model_dir(args.decisions_only), work / "verdict_data" / "test")
        log(f"image gate of {args.decisions_only}: {json.dumps(_gate_summary(decisions['gate']))}")
        log(f"gates by TTA: {_row_gates(decisions['rows'])}")
        record = decisions["verdicts"]
        log(f"verdict levels of {args.decisions_only}: {record['cutoffs']} from {record['n_untouched']} untouched / "
            f"{record['n_manipulated']} manipulated images")
        return 0
    make_data(work / "data", engine)

    overrides = {"data": str(work / "data"), "out": str(work / "run")}
    if args.tiny:
        overrides.update(img_size=64, base_channels=4, depth=2, val_fraction=0.2, epochs=1, precision="32")
    init_from = None
    if args.init_from is not None:
        init_from = resolve_model_dir(args.init_from)
        overrides["init_from"] = str(init_from)
    if args.lr is not None:
        overrides["lr"] = args.lr
    if (work / "run").exists():
        shutil.rmtree(work / "run")
    config = load_config(CONFIG, overrides=overrides)
    # A fixed epoch count with a time cap (not the demo's planner): on a shared machine the measured speed at the
    # start says little about the next two hours, and a chunk that ends early is simply followed by another.
    if not args.tiny:
        config = config.replace(epochs=args.epochs, max_time_minutes=args.budget_minutes)
    result = train(config)
    log(result.summary())

    steps = result.epochs_completed * -(-round((1 - config.val_fraction) * n_train) // config.batch_size)
    make_data(work / "verdict_data", held_out)
    decisions = image_decisions(result.model_dir, work / "verdict_data" / "test")
    verdicts = decisions["verdicts"]
    log(f"image gate: {json.dumps(_gate_summary(decisions['gate']))}")
    log(f"gates by TTA: {_row_gates(decisions['rows'])}")
    log(f"verdict levels: {verdicts['cutoffs']} from {verdicts['n_untouched']} untouched images")
    make_data(work / "fresh", fresh)
    scores = score_fresh(result.model_dir, work / "fresh" / "test", work / "score")
    earlier = []
    if init_from is not None:
        earlier_recipe = json.loads((init_from / "config.json").read_text()).get("recipe", {})
        earlier = earlier_recipe.get("chunks", [])
    command = " ".join(["python", "recipes/base.py", *sys.argv[1:]])
    chunk = {"chunk": len(earlier) + 1, "command": portable(command, work),
             "init_from": None if args.init_from is None else portable(args.init_from, work),
             "epochs": result.epochs_completed, "lr": config.lr,
             "optimizer_steps": steps, "images_seen": steps * config.batch_size,
             "data": {"seed": args.data_seed, "n_train": n_train, "engine_format_version": FORMAT_VERSION,
                      "photo_folders": [str(f) for f in photos],
                      **training_options(args)},
             "precision": result.precision_choice.get("precision"), "machine": machine(),
             "train_seconds": round(result.seconds), "fresh_test_dice_mean": round(scores["dice_mean"], 4),
             "date": time.strftime("%Y-%m-%d", time.gmtime())}
    recipe = {"engine": {"generator": GENERATOR, "format_version": FORMAT_VERSION, "arguments": engine},
              "photos": photo_sources(photos), "test_photos": photo_sources(test_photos),
              "data_seed": args.data_seed, "test_seed": TEST_SEED,
              "train_config": config.to_dict() | {"data": "WORK/data", "out": "WORK/run", "init_from": chunk["init_from"]},
              "chunks": [*earlier, chunk],
              "optimizer_steps_total": sum(c["optimizer_steps"] for c in [*earlier, chunk]),
              "images_seen_total": sum(c["images_seen"] for c in [*earlier, chunk]),
              "fresh_test": {k: scores[k] for k in ("dice_mean", "dice_pooled", "baselines", "untouched") if k in scores}}
    # Paths of this machine do not travel with the weights: the work folder is written WORK.
    recipe = json.loads(portable(json.dumps(recipe), work))
    update_model_config(result.model_dir, {"recipe": recipe, "data": {"data_dir": "WORK/data"},
                                           "training": {"init_from": chunk["init_from"]}})
    log(f"chunk {chunk['chunk']}: {json.dumps(chunk)}")
    log(f"fresh test Dice {scores['dice_mean']:.4f} (all-full {scores['baselines']['all-full']:.4f}, "
        f"all-empty {scores['baselines']['all-empty']:.4f}); untouched flagged "
        f"{scores['untouched']['false_alarm_rate']:.1%} of {scores['untouched']['n']}")
    if args.install and not args.tiny:
        target = SHIPPED_ROOT / "base"
        install, why = install_decision(scores, installed_scores(target, work / "fresh" / "test",
                                                                 work / "score_installed"))
        if not install:
            log(f"not installed: {why}")
        else:
            target.mkdir(parents=True, exist_ok=True)
            for name in ("weights.safetensors", "config.json"):
                shutil.copy2(result.model_dir / name, target / name)
            log(f"installed into {target}: {why}")
    log(f"done in {(time.perf_counter() - started) / 60:.1f} minutes; model {result.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
