"""``kzoo transfer``: train a classifier on a folder of images from a pretrained base.

    kzoo transfer --base vgg19 --data flowers/ --frozen-epochs 3 --fine-tune-epochs 5 \\
        --input-shape 160x160x3 --out flowers.keras

The folder holds one sub-folder per class. The saved model takes RGB 0-255 images, and its
class names go to ``<out>.labels.txt`` (one per line), so ``kzoo classify IMAGE --model
flowers.keras --labels flowers.labels.txt`` works on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kzoo.errors import TransferError

DEFAULT_HEAD = "GAP-FC256+D0.5-FC{classes}"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transfer``."""
    parser = subparsers.add_parser(
        "transfer",
        help="fine-tune a pretrained network on a folder of images (one sub-folder per class)",
        description="Freeze a pretrained base, train a new head, then fine-tune.",
    )
    parser.add_argument("--base", default="vgg19", help="zoo model name or a .keras file")
    parser.add_argument("--data", required=True, help="folder with one sub-folder per class")
    parser.add_argument(
        "--head",
        default=DEFAULT_HEAD,
        help="DSL head; {classes} is replaced by the number of classes (default: %(default)s)",
    )
    parser.add_argument("--frozen-epochs", type=int, default=3, help="phase 1 epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=3, help="phase 2 epochs")
    parser.add_argument("--out", required=True, help="where to save the model (.keras)")
    parser.add_argument("--input-shape", default="224x224x3", help="HxWxC (default %(default)s)")
    parser.add_argument("--validation-split", type=float, default=0.2, help="0 for none")
    parser.add_argument("--weights", default="imagenet", help="weights tag or file; 'none'")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cut", help="last base layer to keep (default: the head boundary)")
    parser.add_argument("--unfreeze", default="all", help="'all', top N blocks, or a layer name")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="phase 1 rate")
    parser.add_argument("--fine-tune-learning-rate", type=float, help="default: a tenth")
    parser.add_argument("--bn", choices=("frozen", "train"), default="frozen")
    parser.add_argument("--cache", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    parser.add_argument("--no-diagnostics", action="store_true", help="no training checks")
    parser.add_argument("--manifest", help="a user manifest merged over the built-in one")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_transfer)


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"160x160x3"`` -> ``(160, 160, 3)``."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise TransferError(f"--input-shape must look like 160x160x3. Received: {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _transfer(args: argparse.Namespace) -> int:
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise TransferError(f"--data must be a folder of class sub-folders. Received: {data}")
    if out.suffix != ".keras":
        raise TransferError(f"--out must end in .keras. Received: {out}")
    if not 0.0 <= args.validation_split < 1.0:
        raise TransferError(
            f"--validation-split must be in [0, 1). Received: {args.validation_split}"
        )
    shape = parse_shape(args.input_shape)

    import keras

    import kzoo

    keras.utils.set_random_seed(args.seed)
    train, validation = _datasets(data, shape, args)
    classes = list(train.class_names)
    print(f"{len(classes)} classes: {', '.join(classes)}")
    base = args.base
    if base.endswith(".keras"):
        base = keras.saving.load_model(base, compile=False)
    unfreeze = int(args.unfreeze) if args.unfreeze.isdigit() else args.unfreeze
    clf = kzoo.transfer(
        base,
        head=args.head.replace("{classes}", str(len(classes))),
        cut=args.cut,
        input_shape=shape,
        weights=None if args.weights.lower() == "none" else args.weights,
        bn=args.bn,
        cache_features={"auto": "auto", "yes": True, "no": False}[args.cache],
        precision=args.precision,
        learning_rate=args.learning_rate,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        manifest=args.manifest,
    )
    outputs = clf.model.output.shape[-1]
    if outputs != len(classes):
        raise TransferError(
            f"the head has {outputs} outputs but {data} has {len(classes)} classes; end the "
            f"head with FC{len(classes)} or FC{{classes}}. Received: --head {args.head!r}"
        )
    print(
        f"base {clf.base.name}: {clf.base.count_params():,} parameters, features "
        f"{tuple(clf.base.output.shape[1:])}; head {args.head}"
    )
    history = clf.fit(
        train,
        validation_data=validation,
        frozen_epochs=args.frozen_epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        unfreeze=unfreeze,
        diagnostics=not args.no_diagnostics,
        verbose=0 if args.quiet else "auto",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    clf.model.save(out)
    labels = out.with_suffix(".labels.txt")
    labels.write_text("".join(f"{name}\n" for name in classes), encoding="utf-8")
    last = {key: values[-1] for key, values in history.history.items()}
    print("final: " + ", ".join(f"{key} {value:.4f}" for key, value in sorted(last.items())))
    print(f"saved {out} and {labels}")
    print(f"classify with: kzoo classify IMAGE --model {out} --labels {labels}")
    return 0


def _datasets(data: Path, shape: tuple[int, int, int], args: argparse.Namespace):
    import keras

    if shape[2] not in (1, 3, 4):
        raise TransferError(f"images have 1, 3 or 4 channels. Received: --input-shape {shape}")
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
