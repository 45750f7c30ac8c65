"""Paint a photo in a painting's style with VGG-19 (Gatys, Ecker & Bethge 2015).

    python examples/style_transfer.py photo.jpg painting.jpg --out stylized.png
    python examples/style_transfer.py --smoke     # generated images, random weights, 64 px

With the ImageNet weights (downloaded on first use) and, say, a photo of Tübingen and van
Gogh's Starry Night, this writes the classic picture. ``--smoke`` checks the pipeline where no
weights can be downloaded: a generated photo and a striped "painting", VGG-19 with random
weights, a few steps; the picture then means nothing, the losses still fall.
"""

# ruff: noqa: E402 - Keras is imported after the command line is parsed
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before Keras loads, so --help answers at once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("content", nargs="?", help="the photo")
    parser.add_argument("style", nargs="?", help="the painting")
    parser.add_argument("--out", default="stylized.png", help="PNG to write")
    parser.add_argument("--size", type=int, default=384, help="longer side in pixels")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="generated images, random weights")
    args = parser.parse_args(argv)
    if not args.smoke and not (args.content and args.style):
        parser.error("give a photo and a painting, or --smoke")
    return args


if __name__ == "__main__":
    parse_args()  # --help and bad flags: an answer before TensorFlow loads

import numpy as np
from PIL import Image

from kzoo.input_optimization import StyleTransfer


def smoke_images(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A disc on a gradient (the "photo") and diagonal stripes (the "painting")."""
    y, x = np.mgrid[:size, :size] / size
    photo = np.stack([x * 255, y * 255, np.full_like(x, 128)], axis=-1)
    photo[(x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.08] = (230, 200, 40)
    stripes = ((x + y) * 8 % 2 < 1)[..., None] * np.array([200, 40, 60]) + 30
    return photo.astype(np.float32), stripes.astype(np.float32)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        content, style = smoke_images()
        options = {"weights": None, "size": 64}
        steps = min(args.steps, 40)
    else:
        content, style = args.content, args.style
        options = {"size": args.size}
        steps = args.steps
    transfer = StyleTransfer(content, style, **options)
    image = transfer.run(steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    for term, values in transfer.history.items():
        print(f"{term:10} {values[0]:10.4g} -> {values[-1]:10.4g}")
    print(f"saved {out}")
    return {"history": transfer.history, "out": out, "image": image}


if __name__ == "__main__":
    main()
    sys.exit(0)
