"""How fast is ``kzoo.check_images`` against a plain Pillow decode loop over the same files?

Generates JPEGs (smooth random colour images, distinct, in 10 class folders), reads them all
once so the page cache is warm for every contender, then times, in this order:

* the baseline: ``for p in paths: Image.open(p).load()`` in one process, the least any check
  that a file decodes must do;
* ``check_images(folder, workers=1, cache=False)``: read, hash, decode, thumbnail, and the
  all-pairs near-duplicate search, in this process;
* the same with ``workers=2`` (processes);
* a second check with the cache on (nothing is decoded: only ``stat`` and the search);
* the ceiling: how much faster two processes do pure arithmetic than one on this machine at
  this moment (on a shared machine, other jobs take cores and lower it).

Each figure is the best of ``--repeats`` runs. The last lines are the ratios (check / loop,
images per second); targets: >= 0.9 with one worker, more with two.

    python benchmarks/bench_check.py [--images 10000] [--side 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import kzoo


def generate(folder: Path, count: int, side: int, seed: int = 0) -> list[Path]:
    """``count`` distinct smooth colour JPEGs of ``side`` x ``side`` pixels in 10 classes."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
        noise = rng.integers(-12, 13, (side, side, 3))
        pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / f"class{index % 10}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def pil_loop(paths: list[Path]) -> None:
    for path in paths:
        with Image.open(path) as image:
            image.load()


def best(seconds: list[float]) -> float:
    return min(seconds)


def arithmetic(n: int = 2_000_000) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_ceiling(repeats: int) -> float:
    """How much faster two processes do pure arithmetic than one, on this machine, now.

    On a shared machine the other jobs set this; the workers=2 ratio cannot beat it.
    """
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(arithmetic, [10, 10]))  # start the workers
        two = timed(lambda: list(pool.map(arithmetic, [2_000_000] * 4)), repeats)
    one = timed(lambda: [arithmetic() for _ in range(4)], repeats)
    return one / two


def timed(function, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return best(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="how many JPEGs")
    parser.add_argument("--side", type=int, default=256, help="their side in pixels")
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender (best kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        os.environ["KZOO_HOME"] = str(Path(tmp) / "cache")  # a cache of this run only
        folder = Path(tmp) / "data"
        start = time.perf_counter()
        paths = generate(folder, args.images, args.side)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"{len(paths):,} JPEGs of {args.side}x{args.side} ({megabytes:.0f} MB) written in "
            f"{time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs"
        )
        for path in paths:  # warm the page cache for every contender alike
            path.read_bytes()

        loop = timed(lambda: pil_loop(paths), args.repeats)
        one = timed(lambda: kzoo.check_images(folder, workers=1, cache=False), args.repeats)
        two = timed(lambda: kzoo.check_images(folder, workers=2, cache=False), args.repeats)
        report = kzoo.check_images(folder, workers=2)  # fills the cache
        cached = timed(lambda: kzoo.check_images(folder, workers=2), args.repeats)
        again = kzoo.check_images(folder, workers=2)
        assert again.decoded == 0 and again.files == len(paths), again.decoded
        assert report.flagged() == set(), report.to_table()

        ceiling = parallel_ceiling(args.repeats)
        rate = {name: len(paths) / s for name, s in [("loop", loop), ("one", one), ("two", two)]}
        print(f"Image.open(p).load() loop      {rate['loop']:8.0f} images/s  ({loop:.2f} s)")
        print(f"check_images workers=1         {rate['one']:8.0f} images/s  ({one:.2f} s)")
        print(f"check_images workers=2         {rate['two']:8.0f} images/s  ({two:.2f} s)")
        print(f"check_images cached, nothing decoded  {len(paths) / cached:8.0f} images/s")
        print(f"two processes / one on pure arithmetic, now (the ceiling): {ceiling:.2f}x")
        print(f"ratio workers=1 / loop (target >= 0.9): {rate['one'] / rate['loop']:.2f}")
        print(f"ratio workers=2 / loop (target > workers=1): {rate['two'] / rate['loop']:.2f}")


if __name__ == "__main__":
    main()
