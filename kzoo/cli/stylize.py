"""``kzoo stylize``: paint a photo in the style of another image (needs Pillow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from kzoo.input_optimization import StyleTransfer

__all__ = ["run_stylize"]


def run_stylize(args: argparse.Namespace) -> int:
    """Run the style transfer and write the PNG; print the losses at the start and the end."""
    options = {"size": args.size, "seed": args.seed, "model": args.model}
    if args.weights is not None:
        options["weights"] = None if args.weights.lower() == "none" else args.weights
    if args.manifest is not None:
        options["manifest"] = args.manifest
    if args.style_weight is not None:
        options["style_weight"] = args.style_weight
    transfer = StyleTransfer(args.content, args.style, **options)
    image = transfer.run(args.steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    history = transfer.history
    terms = ", ".join(f"{k} {v[0]:.3g} -> {v[-1]:.3g}" for k, v in history.items())
    print(f"{args.steps} steps: {terms}")
    print(f"saved {out} ({image.shape[1]}x{image.shape[0]})")
    return 0
