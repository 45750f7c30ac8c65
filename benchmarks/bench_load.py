"""Warm-cache ``kzoo.load("vgg19")`` vs ``keras.applications.VGG19(weights=<local h5>)``.

Both read the same full-size synthetic Keras HDF5 file (548 MB of float32 in the layout of
``vgg19_weights_tf_dim_ordering_tf_kernels.h5``): Keras straight from it, kzoo from its
converted cache, filled once before timing through a user manifest whose URL is the local
file. The two are interleaved and repeated; medians, best times and CPU times are printed,
the best-of-N wall-time ratio last (target <= 1.1).

    python benchmarks/bench_load.py [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="folder for the synthetic file and cache (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(args.keep or tmp), args.repeats)


def run(folder: Path, repeats: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["KZOO_HOME"] = str(folder / "cache")
    import keras

    import kzoo
    from kzoo.download import file_digest
    from kzoo.synthetic import VGG19, write_keras_h5

    source = folder / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    if not source.exists():
        start = time.perf_counter()
        write_keras_h5(source, VGG19)
        print(
            f"wrote synthetic {source.name}: {source.stat().st_size / 1e6:.0f} MB "
            f"in {time.perf_counter() - start:.1f} s"
        )
    manifest = {
        "models": {
            "vgg19": {
                "weights": {
                    "imagenet": {
                        "files": {
                            "top": {
                                "urls": [source.as_uri()],
                                "size": source.stat().st_size,
                                "md5": file_digest(source, "md5").split(":", 1)[1],
                            }
                        }
                    }
                }
            }
        }
    }

    start = time.perf_counter()
    kzoo.load("vgg19", manifest=manifest, progress=False)
    print(f"cold kzoo.load (copy + verify + convert + store): {time.perf_counter() - start:.1f} s")
    gc.collect()

    def timed(make) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model = make()
        elapsed = time.perf_counter() - wall, time.process_time() - cpu
        del model
        keras.backend.clear_session()
        gc.collect()
        return elapsed

    kzoo_times, keras_times = [], []
    for i in range(repeats):
        kzoo_times.append(timed(lambda: kzoo.load("vgg19", manifest=manifest)))
        keras_times.append(timed(lambda: keras.applications.VGG19(weights=str(source))))
        print(
            f"round {i + 1}: kzoo.load {kzoo_times[-1][0]:.2f} s "
            f"(cpu {kzoo_times[-1][1]:.2f} s), keras.applications.VGG19 "
            f"{keras_times[-1][0]:.2f} s (cpu {keras_times[-1][1]:.2f} s)"
        )
    for label, pick in (("median", statistics.median), ("best", min)):
        ours, theirs = pick(t[0] for t in kzoo_times), pick(t[0] for t in keras_times)
        print(
            f"{label}: kzoo.load (warm cache) {ours:.2f} s, keras.applications.VGG19 "
            f"{theirs:.2f} s, ratio {ours / theirs:.2f}"
        )
    cpu = statistics.median(t[1] for t in kzoo_times) / statistics.median(t[1] for t in keras_times)
    print(f"median CPU-time ratio: {cpu:.2f}")
    # best-of-N: other processes on a shared machine only ever add time
    best = min(t[0] for t in kzoo_times) / min(t[0] for t in keras_times)
    print(f"ratio kzoo/keras, best of {repeats} (target <= 1.1): {best:.2f}")


if __name__ == "__main__":
    main()
