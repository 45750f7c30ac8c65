"""``kzoo plot``: pictures of a saved model or a training history (needs ``kzoo[plot]``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from kzoo import plots

__all__ = ["run_features", "run_history", "run_kernels", "run_occlusion", "run_saliency"]


def _load_model(path: Path):
    import keras

    return keras.saving.load_model(path)


def _run(draw) -> int:
    try:
        written = draw()
    except (ImportError, ValueError, OSError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(written)
    return 0


def run_kernels(args: argparse.Namespace) -> int:
    """Draw a conv layer's kernels (the first Conv2D, nested ones included)."""
    return _run(lambda: plots.plot_kernels(_load_model(args.model), args.out, layer=args.layer))


def _image(path: Path) -> np.ndarray | Path:
    """A ``.npy`` array as it is (in the model's input scale), or the image file's path."""
    return np.load(path) if path.suffix == ".npy" else path


def run_saliency(args: argparse.Namespace) -> int:
    """Draw an image beside the gradient saliency map of its class."""

    def draw():
        model = _load_model(args.model)
        return plots.plot_saliency(model, _image(args.image), args.out, args.class_index)

    return _run(draw)


def run_features(args: argparse.Namespace) -> int:
    """Draw an image's feature maps at one layer (the first conv, nested ones included)."""

    def draw():
        model = _load_model(args.model)
        return plots.plot_feature_maps(
            model, _image(args.image), args.out, layer=args.layer, max_maps=args.maps
        )

    return _run(draw)


def run_occlusion(args: argparse.Namespace) -> int:
    """Draw an image beside its occlusion map: the class score's drop under a sliding patch."""

    def draw():
        model = _load_model(args.model)
        return plots.plot_occlusion(
            model,
            _image(args.image),
            args.out,
            args.class_index,
            patch=args.patch,
            stride=args.stride,
        )

    return _run(draw)


def run_history(args: argparse.Namespace) -> int:
    """Draw training curves from a JSON history."""
    return _run(lambda: plots.plot_history(args.history, args.out, args.phase_boundary))
