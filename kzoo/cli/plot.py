"""``kzoo plot``: pictures of a saved model or a training history (needs ``kzoo[plot]``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``kzoo plot kernels|saliency|history``."""
    parser = subparsers.add_parser(
        "plot", help="draw kernels, saliency maps or training curves to a PNG"
    )
    commands = parser.add_subparsers(dest="plot_command", metavar="WHAT", required=True)

    kernels = commands.add_parser("kernels", help="the first conv layer's kernels as a grid")
    kernels.add_argument("model", type=Path, help="a saved model (.keras)")
    kernels.add_argument("--layer", help="the conv layer to draw (default: the first Conv2D)")
    kernels.add_argument("--out", type=Path, default=Path("kernels.png"), help="PNG to write")
    kernels.set_defaults(func=_kernels)

    saliency = commands.add_parser("saliency", help="what the network looks at in an image")
    saliency.add_argument("model", type=Path, help="a saved model (.keras)")
    saliency.add_argument("image", type=Path, help="an image file, or a .npy array")
    saliency.add_argument("--class", dest="class_index", type=int, help="class to explain")
    saliency.add_argument("--out", type=Path, default=Path("saliency.png"), help="PNG to write")
    saliency.set_defaults(func=_saliency)

    history = commands.add_parser("history", help="training curves from a JSON history")
    history.add_argument(
        "history",
        type=Path,
        help='JSON: {"loss": [...], ...} or {"history": {...}, "phase_boundary": N}',
    )
    history.add_argument("--phase-boundary", type=int, help="epochs before fine-tuning")
    history.add_argument("--out", type=Path, default=Path("history.png"), help="PNG to write")
    history.set_defaults(func=_history)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _missing(*paths: Path) -> str | None:
    for path in paths:
        if not path.is_file():
            return f"no such file: {path}"
    return None


def _load_model(path: Path):
    import keras

    import kzoo.layers  # noqa: F401  (registers kzoo's layers before deserializing)

    return keras.saving.load_model(path)


def _run(draw) -> int:
    try:
        written = draw()
    except (ImportError, ValueError, OSError) as problem:
        return _fail(str(problem))
    print(written)
    return 0


def _kernels(args: argparse.Namespace) -> int:
    if problem := _missing(args.model):
        return _fail(problem)
    from kzoo import plots

    return _run(lambda: plots.plot_kernels(_load_model(args.model), args.out, layer=args.layer))


def _saliency(args: argparse.Namespace) -> int:
    if problem := _missing(args.model, args.image):
        return _fail(problem)
    import numpy as np

    from kzoo import plots

    def draw():
        image = np.load(args.image) if args.image.suffix == ".npy" else args.image
        return plots.plot_saliency(_load_model(args.model), image, args.out, args.class_index)

    return _run(draw)


def _history(args: argparse.Namespace) -> int:
    if problem := _missing(args.history):
        return _fail(problem)
    from kzoo import plots

    return _run(lambda: plots.plot_history(args.history, args.out, args.phase_boundary))
