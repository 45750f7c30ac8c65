"""Fine-tune VGG-19 on a folder of images, one sub-folder per class.

    python examples/transfer_folder.py flowers/ --input-shape 160x160x3
    python examples/transfer_folder.py --smoke      # tiny folder, synthetic weights, 32x32

The model takes RGB 0-255 images (VGG's preprocessing is inside it) and is saved as a
``.keras`` file that ``keras.saving.load_model`` reloads after ``import kzoo``.
"""

# ruff: noqa: E402 - Keras is imported after the command line is parsed
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import kzoo  # cheap: kzoo imports Keras only when a model is built


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before Keras loads, so --help answers at once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="folder with one sub-folder per class")
    parser.add_argument("--input-shape", default="160x160x3")
    parser.add_argument("--weights", default="imagenet", help="weights tag or file")
    parser.add_argument("--frozen-epochs", type=int, default=3)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--out", default="folder_classifier.keras")
    parser.add_argument("--smoke", action="store_true", help="tiny folder and synthetic weights")
    parser.add_argument(
        "--work", help="--smoke: folder for the generated images, weights and model "
        "(default: a temporary folder, deleted at the end)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.data and not args.smoke:
        parser.error("give a folder of images, or --smoke")
    return args


if __name__ == "__main__":
    _args = parse_args()  # --help and bad flags: an answer before TensorFlow loads
    if not _args.smoke:  # the weights too: offline, the error comes in a second
        try:
            kzoo.zoo.prepare_weights("vgg19", _args.weights, include_top=False)
        except kzoo.KzooError as error:
            sys.exit(f"error: {error}")

import keras
import numpy as np


def write_tiny_folder(root: Path, classes=("red", "green", "blue"), per_class=8, size=32) -> Path:
    """A folder of random images in which one colour channel dominates per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 110, size=(size, size, 3)).astype(np.uint8)
            pixels[..., index] += 140
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not args.smoke:
        return train(args)
    with contextlib.ExitStack() as stack:  # nothing of a smoke run is left behind
        work = Path(args.work or stack.enter_context(tempfile.TemporaryDirectory()))
        from kzoo.synthetic import VGG19, write_keras_h5

        args.data = write_tiny_folder(work / "images")
        args.weights = str(work / "vgg19_notop_synthetic.h5")
        write_keras_h5(Path(args.weights), VGG19, include_top=False)  # random, real layout
        args.input_shape, args.frozen_epochs, args.fine_tune_epochs = "32x32x3", 2, 1
        args.out = str(work / "folder_classifier.keras")
        return train(args)


def train(args: argparse.Namespace) -> dict:
    """Transfer VGG-19 to the folder, save, reload, and report."""
    height, width, channels = (int(v) for v in args.input_shape.split("x"))

    train, validation = keras.utils.image_dataset_from_directory(
        args.data, image_size=(height, width), batch_size=8,
        validation_split=0.25, subset="both", seed=0,
    )  # fmt: skip
    classes = train.class_names

    # The five lines: base, head, two phases, save.
    clf = kzoo.transfer(
        "vgg19", head=f"GAP-FC256+D0.5-FC{len(classes)}", input_shape=(height, width, channels),
        weights=args.weights,
    )  # fmt: skip
    clf.fit(
        train, validation_data=validation, frozen_epochs=args.frozen_epochs,
        fine_tune_epochs=args.fine_tune_epochs, unfreeze=1 if args.smoke else "all",
    )  # fmt: skip
    clf.model.save(args.out)

    reloaded = keras.saving.load_model(args.out)
    images, _ = next(iter(validation))
    same = np.allclose(reloaded.predict(images, verbose=0), clf.model.predict(images, verbose=0))
    history = clf.history.history
    print(f"classes: {', '.join(classes)}")
    print(f"phase boundary after epoch {clf.history.phase_boundary}")
    print(f"final val_accuracy {history['val_accuracy'][-1]:.3f}; saved {args.out}")
    print(f"reloaded model predicts the same: {same}")
    return {"classes": classes, "same": bool(same), "out": args.out}


if __name__ == "__main__":
    main()
