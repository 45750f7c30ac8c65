"""``kzoo transfer``: train a classifier on a folder of images from a pretrained base.

    kzoo transfer --base vgg19 --data flowers/ --frozen-epochs 3 --fine-tune-epochs 5 \\
        --input-shape 160x160x3 --out flowers.keras

The folder holds one sub-folder per class. The saved model takes RGB 0-255 images, and its
class names go beside it with the same stem (``flowers.keras`` -> ``flowers.labels.txt``, one
per line), so ``kzoo classify IMAGE --model flowers.keras --labels flowers.labels.txt`` works
on it. Before training, a quick data check (:func:`kzoo.check_images` with ``quick=True``)
decodes every file of the folder: Keras's loader would stop at the first that does not decode,
so the command names them all and stops before loading any model; so it does when the folder
holds splits rather than classes (``--no-check`` skips the check).
When the training diagnostics stop a phase (NaN loss, chance-level accuracy, collapsed
predictions), nothing is saved and the command says why and exits with status 1. Started by
a launcher as one of several processes (``KERAS_DISTRIBUTION_NUM_PROCESSES`` > 1, JAX), it
joins the others, trains data-parallel, and only process 0 writes the files.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import keras

from kzoo.datacheck import DataReport, check_images
from kzoo.errors import TransferError
from kzoo.transfer_learning import initialize_processes, is_chief, transfer

__all__ = ["run_transfer"]


def run_transfer(args: argparse.Namespace) -> int:
    """Train, save the model and its class names, print what happened."""
    data, out, shape = Path(args.data), Path(args.out), args.input_shape
    several = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1) > 1
    if several:
        initialize_processes()  # started by a launcher as one of several processes
    check = None
    if not args.no_check:
        check = _check_data(data, args.quiet or (several and not is_chief()))
        if check is not None and not check.ok:
            return 1
    keras.utils.set_random_seed(args.seed)
    train, validation = _datasets(data, shape, args)
    classes = list(train.class_names)
    print(f"{len(classes)} classes: {', '.join(classes)}")
    base = args.base
    if base.endswith(".keras"):
        base = keras.saving.load_model(base, compile=False)
    unfreeze = int(args.unfreeze) if args.unfreeze.isdigit() else args.unfreeze
    head = args.head.replace("{classes}", str(len(classes)))
    clf = transfer(
        base,
        head=head,
        cut=args.cut,
        input_shape=shape,
        weights=None if args.weights.lower() == "none" else args.weights,
        bn=args.bn,
        cache_features={"auto": "auto", "yes": True, "no": False, "disk": "disk"}[args.cache],
        feature_memory=args.feature_memory,
        precision=args.precision,
        learning_rate=args.learning_rate,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        manifest=args.manifest,
    )
    outputs = clf.model.output.shape[-1]
    if outputs != len(classes):
        raise TransferError(
            f"the head has {outputs} outputs but {data} has {len(classes)} classes; end the "
            f"head with FC{len(classes)} or FC{{classes}}. Received: --head {head!r}"
        )
    print(
        f"base {clf.base.name}: {clf.base.count_params():,} parameters, features "
        f"{tuple(clf.base.output.shape[1:])}; head {head}"
    )
    history = clf.fit(
        train,
        validation_data=validation,
        frozen_epochs=args.frozen_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        unfreeze=unfreeze,
        schedule=None if args.schedule == "constant" else args.schedule,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        diagnostics=not args.no_diagnostics,
        verbose=0 if args.quiet else "auto",
    )
    if history.stopped is not None and history.stopped.by_diagnostics:
        print(f"error: {history.stopped}", file=sys.stderr)
        print(
            f"  nothing saved to {out}; fix the cause above, or pass --no-diagnostics to "
            "train to the end anyway",
            file=sys.stderr,
        )
        return 1
    if not is_chief():  # several processes: process 0 writes the files
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    clf.model.save(out)
    labels = out.with_suffix(".labels.txt")
    labels.write_text("".join(f"{name}\n" for name in classes), encoding="utf-8")
    if args.report:
        report = clf.report(args.report, validation_data=validation, data_check=check)
        print(f"report: {report}")
    last = {key: values[-1] for key, values in history.history.items()}
    print("final: " + ", ".join(f"{key} {value:.4f}" for key, value in sorted(last.items())))
    print(f"saved {out} and {labels}")
    print(f"classify with: kzoo classify IMAGE --model {out} --labels {labels}")
    return 0


def _check_data(data: Path, quiet: bool) -> DataReport | None:
    """Run the quick data check and print what it found (its ``ok`` is False when training
    cannot go well); None when Pillow is missing."""
    if importlib.util.find_spec("PIL") is None:
        print("data check skipped: it needs Pillow (pip install kzoo[check])")
        return None
    report = check_images(data, quick=True, progress=not quiet)
    if not report.findings:
        print(f"data check: all {report.files:,} images decode")
        return report
    print(report.to_table(limit=20))
    undecodable = report.of_kind("undecodable")
    if undecodable:
        print(
            f"error: {len(undecodable)} file(s) in {data} do not decode (listed above); "
            "Keras's loader would stop at the first. Fix or remove them, or pass --no-check "
            "to try anyway",
            file=sys.stderr,
        )
    if report.of_kind("nested_splits"):
        print(
            f"error: {data} holds splits, not classes (see above): give one split as --data, "
            "or pass --no-check to train on them as classes anyway",
            file=sys.stderr,
        )
    return report


def _datasets(data: Path, shape: tuple[int, int, int], args: argparse.Namespace):
    options = {
        "image_size": shape[:2],
        "batch_size": args.batch_size,
        "color_mode": {1: "grayscale", 3: "rgb", 4: "rgba"}[shape[2]],
        "seed": args.seed,
        "label_mode": "int",
    }
    try:
        if args.validation_split == 0:
            return keras.utils.image_dataset_from_directory(data, **options), None
        return keras.utils.image_dataset_from_directory(
            data, validation_split=args.validation_split, subset="both", **options
        )
    except ValueError as error:  # no images, one class, ...: say which folder
        raise TransferError(f"cannot read images from {data}: {error}") from error
