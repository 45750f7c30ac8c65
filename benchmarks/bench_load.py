"""Warm-cache ``kzoo.load(MODEL)`` vs ``keras.applications.X(weights=<local h5>)``.

``--model vgg19`` (default) or ``resnet50``. Both sides read the same full-size Keras HDF5 file
in the layout of ``vgg19_weights_tf_dim_ordering_tf_kernels.h5`` (548 MB of synthetic
float32) or ``resnet50_weights_tf_dim_ordering_tf_kernels.h5`` (the weights of a freshly
built ``keras.applications.ResNet50``, written in the legacy layout): Keras straight from it,
kzoo from its converted cache, filled once before timing through a user manifest whose URL is
the local file. The two are interleaved and repeated; medians, best times and CPU times are
printed, the best-of-N wall-time ratio last (target <= 1.1).

    python benchmarks/bench_load.py [--model resnet50] [--repeats 3] [--keep DIR]
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
    parser.add_argument("--model", choices=sorted(APPLICATIONS), default="vgg19")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(args.keep or tmp), args.repeats, args.model)


# kzoo model -> (keras.applications function, Keras's file name)
APPLICATIONS = {
    "vgg19": ("VGG19", "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
}


def _write_source(model: str, source: Path) -> None:
    import keras
    import numpy as np

    from kzoo.synthetic import VGG19, write_keras_h5, write_legacy_h5

    if model == "vgg19":
        write_keras_h5(source, VGG19)
        return
    built = getattr(keras.applications, APPLICATIONS[model][0])(weights=None)
    layers = [(layer.name, [np.asarray(w) for w in layer.get_weights()]) for layer in built.layers]
    write_legacy_h5(source, layers)
    del built
    keras.backend.clear_session()


def run(folder: Path, repeats: int, model: str = "vgg19") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["KZOO_HOME"] = str(folder / "cache")
    import keras

    import kzoo
    from kzoo.download import file_digest

    application, file_name = APPLICATIONS[model]
    source = folder / file_name
    if not source.exists():
        start = time.perf_counter()
        _write_source(model, source)
        print(
            f"wrote synthetic {source.name}: {source.stat().st_size / 1e6:.0f} MB "
            f"in {time.perf_counter() - start:.1f} s"
        )
    manifest = {
        "models": {
            model: {
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
    kzoo.load(model, manifest=manifest, progress=False)
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
        kzoo_times.append(timed(lambda: kzoo.load(model, manifest=manifest)))
        keras_times.append(
            timed(lambda: getattr(keras.applications, application)(weights=str(source)))
        )
        print(
            f"round {i + 1}: kzoo.load {kzoo_times[-1][0]:.2f} s "
            f"(cpu {kzoo_times[-1][1]:.2f} s), keras.applications.{application} "
            f"{keras_times[-1][0]:.2f} s (cpu {keras_times[-1][1]:.2f} s)"
        )
    for label, pick in (("median", statistics.median), ("best", min)):
        ours, theirs = pick(t[0] for t in kzoo_times), pick(t[0] for t in keras_times)
        print(
            f"{label}: kzoo.load (warm cache) {ours:.2f} s, keras.applications.{application} "
            f"{theirs:.2f} s, ratio {ours / theirs:.2f}"
        )
    cpu = statistics.median(t[1] for t in kzoo_times) / statistics.median(t[1] for t in keras_times)
    print(f"median CPU-time ratio: {cpu:.2f}")
    # best-of-N: other processes on a shared machine only ever add time
    best = min(t[0] for t in kzoo_times) / min(t[0] for t in keras_times)
    print(f"ratio kzoo/keras, best of {repeats} (target <= 1.1): {best:.2f}")


if __name__ == "__main__":
    main()
