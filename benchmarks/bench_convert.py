"""Full-size VGG-19 and ResNet-50 weight conversion: time vs merely reading the file, and memory.

For each source format a synthetic full-size file (VGG-19: 143.7 M float32 = 548 MiB of
weights; ResNet-50: 25.6 M = 98 MiB in Keras's layout; real layer layout and names) is written
once to a temp folder. Then each step runs in
fresh subprocesses, so peak RSS belongs to that step alone; the best time of 5 is kept for
each (single timings on a shared machine vary by up to 2x):

- ``read``: read every byte of the file into memory (the baseline),
- ``convert``: ``kzoo.converters.convert(fmt, path, slots)`` for the full model,
- ``convert+store``: convert, then write the converted-weights cache file (atomic, fsynced).

Then, untimed, a full-size correctness check: the converted weights go into kzoo's VGG-19 (or
the ResNet-50 variant of the source: ``resnet50``, ``resnet50_torch``, ``resnet50_caffe``) and
its output for one image is compared with an independent NumPy forward pass that runs the
written arrays in the source's own layout and semantics (NCHW, its own flatten order, strides
and padding; ``tests/numpy_reference.py``), as the unit tests do at small widths. ResNets are
checked on their pooled features at 64x64, which keeps the NumPy pass quick.

Run: ``python benchmarks/bench_convert.py [--formats caffe,lasagne] [--dir /big/tmp]
[--no-check] [--json out.json]``; ``--tiny`` runs the same on the unit tests' small VGG (a
smoke run: its ratios are all fixed costs). Needs about 1.2 GB of free disk and 4 GB of
memory; files are deleted at the end. Targets: VGG-19 convert time <= 2x read time, peak RSS
<= 2x the weights' size; ResNet-50 <= 1.3x and <= 1.5x. RSS is the whole process's peak (Python,
NumPy and the reader's libraries included), and also shown above the process's start-up RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kzoo import synthetic
from kzoo.synthetic import RESNET50, TINY_RESNET50, TINY_VGG19, VGG19, keras_slots, resnet_slots

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy_reference as ref  # the tests' independent forward passes

# The full-size networks; ``--tiny`` swaps in the unit tests' small ones (a smoke run).
LAYOUT = VGG19
RESNET = RESNET50

FORMATS = {
    # name: (converter format, file name, writer)
    "keras_h5": ("keras_h5", "vgg19.h5", lambda p: synthetic.write_keras_h5(p, LAYOUT)),
    "caffe": ("caffe", "vgg19.caffemodel", lambda p: synthetic.write_caffe(p, LAYOUT, version=1)),
    "lasagne": ("lasagne", "vgg19.pkl", lambda p: synthetic.write_lasagne(p, LAYOUT)),
    "safetensors_vgg": (
        "safetensors_vgg",
        "model.safetensors",
        lambda p: synthetic.write_safetensors(p, LAYOUT),
    ),
    "safetensors_vgg_timm": (
        "safetensors_vgg",
        "timm.safetensors",
        lambda p: synthetic.write_safetensors(p, LAYOUT, keys="timm"),
    ),
    "resnet50_keras_h5": (
        "keras_h5",
        "resnet50.h5",
        lambda p: synthetic.write_keras_h5_resnet(p, RESNET),
    ),
    "resnet50_caffe": (
        "caffe",
        "ResNet-50-model.caffemodel",
        lambda p: synthetic.write_caffe_resnet(p, RESNET),
    ),
    "resnet50_torch_pth": (
        "torch",
        "resnet50-0676ba61.pth",
        lambda p: synthetic.write_torch_resnet(p, RESNET, container="pth"),
    ),
    "resnet50_torch_safetensors": (
        "torch",
        "model.safetensors",
        lambda p: synthetic.write_torch_resnet(p, RESNET),
    ),
}
# ResNet cases: (kzoo architecture, tests' Keras variant, conv biases of its slots)
RESNET_VARIANTS = {
    "resnet50_keras_h5": ("resnet50", "keras", "all"),
    "resnet50_caffe": ("resnet50_caffe", "caffe", "stem"),
    "resnet50_torch_pth": ("resnet50_torch", "torch", "none"),
    "resnet50_torch_safetensors": ("resnet50_torch", "torch", "none"),
}


def _slots(name: str) -> list:
    if name in RESNET_VARIANTS:
        return resnet_slots(RESNET, conv_bias=RESNET_VARIANTS[name][2])
    return keras_slots(LAYOUT)


def _spec() -> str:
    blocks = zip(LAYOUT.convs_per_block, LAYOUT.widths, strict=True)
    return "-".join([f"{w}C3x{n}-MP2" for n, w in blocks] + [f"FC{w}" for w in LAYOUT.fc])


def _nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


REFERENCES = {
    # name: forward pass of the written arrays (w) over blocks (b), in the source's own layout
    "keras_h5": lambda w, b, x: ref.keras_forward(w, b, x),
    "caffe": lambda w, b, x: ref.caffe_forward(w, b, _nchw(x)),
    "lasagne": lambda w, b, x: ref.lasagne_forward(w["param values"], b, _nchw(x)),
    "safetensors_vgg": lambda w, b, x: ref.torchvision_forward(w, b, _nchw(x)),
    "safetensors_vgg_timm": lambda w, b, x: ref.timm_forward(w, b, _nchw(x)),
}


def _resnet_check(name: str, path: Path, written: object) -> float:
    """Relative error of a converted ResNet's pooled features at 64x64 against NumPy."""
    import keras

    import kzoo
    from kzoo.converters import convert, slots_of
    from kzoo.converters.assign import assign

    architecture, variant, _ = RESNET_VARIANTS[name]
    if RESNET is TINY_RESNET50:
        from resnet_models import keras_resnet  # the tests' small Keras ResNets

        model = keras_resnet(RESNET, variant, include_top=False, pooling="avg")
        size = RESNET.input_size
    else:
        size = 64
        model = kzoo.build(
            architecture, input_shape=(size, size, 3), include_top=False, pooling="avg"
        )
    assign(model, convert(FORMATS[name][0], path, slots_of(model)))
    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    if variant == "keras":
        features = {k: v for k, v in written.items() if k != "predictions"}
        expected = ref.keras_resnet_forward(features, RESNET.blocks, x)
    elif variant == "caffe":
        features = {k: v for k, v in written.items() if k != "fc1000"}
        expected = ref.caffe_resnet_forward(features, RESNET.blocks, _nchw(x))
    else:
        features = {k: v for k, v in written.items() if not k.startswith("fc.")}
        expected = ref.torch_resnet_forward(features, RESNET.blocks, True, _nchw(x))
    return ref.relative_error(got, expected)


def _check(name: str, path: Path, written: object) -> float:
    """Relative error of the converted full-size model against the NumPy reference."""
    import keras

    if name in RESNET_VARIANTS:
        return _resnet_check(name, path, written)

    import kzoo
    from kzoo.converters import convert, slots_of
    from kzoo.converters.assign import assign

    shape = (LAYOUT.input_size, LAYOUT.input_size, LAYOUT.in_channels)
    model = kzoo.build(_spec(), input_shape=shape, head="linear")
    assign(model, convert(FORMATS[name][0], path, slots_of(model)))
    x = np.random.default_rng(0).uniform(-1, 1, (1, *shape)).astype(np.float32)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    return ref.relative_error(got, REFERENCES[name](written, LAYOUT.convs_per_block, x))


def _peak_rss_bytes() -> int:
    # VmHWM belongs to this process image; ru_maxrss would include the parent's RSS at fork,
    # which Linux carries across exec (the parent held the just-written weights).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _child(step: str, name: str, path: Path) -> None:
    """Run one step in this (fresh) process and print its figures as JSON."""
    import numpy as np

    from kzoo.converters import convert
    from kzoo.zoo.store import save_weights

    slots = _slots(name)
    fmt = FORMATS[name][0]
    baseline_rss = _peak_rss_bytes()
    start = time.perf_counter()
    if step == "read":
        buffer = np.empty(path.stat().st_size, dtype=np.uint8)
        with open(path, "rb", buffering=0) as handle:
            view = memoryview(buffer)
            done = 0
            while done < len(buffer):
                done += handle.readinto(view[done : done + (64 << 20)])
        weights = int(buffer.size)
    else:
        arrays = convert(fmt, path, slots)
        weights = sum(a.nbytes for v in arrays.values() for a in v)
        if step == "convert+store":
            save_weights(path.with_suffix(".converted.h5"), arrays, {"format": fmt})
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss": _peak_rss_bytes(),
                "rss_before": baseline_rss,
                "bytes": weights,
            }
        )
    )


def _run_child(step: str, name: str, path: Path, repeat: int) -> dict[str, float]:
    """Best time and worst peak RSS of ``repeat`` fresh processes (shared machines are noisy)."""
    runs = []
    tiny = ["--tiny"] if LAYOUT is TINY_VGG19 else []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, *tiny, "--child", step, name, str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    worst = max(runs, key=lambda r: r["peak_rss"])
    return {**best, "peak_rss": worst["peak_rss"], "rss_before": worst["rss_before"]}


def _write(name: str, folder: Path) -> tuple[Path, object]:
    _, file_name, writer = FORMATS[name]
    path = folder / file_name
    return path, writer(path)  # the arrays it wrote, in the source's layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--dir", default=None, help="folder for the temp files")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per step")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness check")
    parser.add_argument("--tiny", action="store_true", help="the tests' small VGG (smoke run)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global LAYOUT, RESNET
    LAYOUT = TINY_VGG19 if args.tiny else VGG19
    RESNET = TINY_RESNET50 if args.tiny else RESNET50
    if args.child:
        step, name, path = args.child
        _child(step, name, Path(path))
        return

    def weights_mb(name: str) -> float:
        return sum(4 * _prod(s) for slot in _slots(name) for s in slot.shapes) / 2**20

    folder = Path(tempfile.mkdtemp(prefix="kzoo-bench-convert-", dir=args.dir))
    rows = []
    try:
        for name in args.formats.split(","):
            start = time.perf_counter()
            path, arrays = _write(name, folder)
            written = time.perf_counter() - start
            size_mb = path.stat().st_size / 2**20
            read = _run_child("read", name, path, args.repeat)
            conv = _run_child("convert", name, path, args.repeat)
            store = _run_child("convert+store", name, path, args.repeat)
            error = None if args.no_check else _check(name, path, arrays)
            del arrays
            rows.append((name, size_mb, written, read, conv, store, error))
            for leftover in folder.iterdir():
                leftover.unlink()
            print(
                f"{name:26s} file {size_mb:6.0f} MiB (written in {written:5.1f} s) | "
                f"read {read['seconds']:5.2f} s, RSS {read['peak_rss'] / 2**20:5.0f} MiB | "
                f"convert {conv['seconds']:5.2f} s, RSS {conv['peak_rss'] / 2**20:5.0f} MiB | "
                f"+store {store['seconds']:5.2f} s, RSS {store['peak_rss'] / 2**20:5.0f} MiB",
                flush=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print("\ntargets: VGG-19 time <= 2.0x read, RSS <= 2.0x; ResNet-50 <= 1.3x and <= 1.5x")
    print(
        f"{'format':26s} {'weights':>8s} {'convert/read':>13s} {'store/read':>11s} "
        f"{'RSS/weights':>12s} {'above start':>12s} {'vs NumPy reference':>19s}"
    )
    figures = {}
    for name, _, _, read, conv, store, error in rows:
        weights = weights_mb(name)
        peak = max(conv["peak_rss"], store["peak_rss"]) / 2**20
        rss = peak / weights
        above = (peak - conv["rss_before"] / 2**20) / weights
        check = "not run" if error is None else f"{error:.1e} rel"
        print(
            f"{name:26s} {weights:6.0f}MiB {conv['seconds'] / read['seconds']:12.2f}x "
            f"{store['seconds'] / read['seconds']:10.2f}x {rss:11.2f}x {above:11.2f}x "
            f"{check:>19s}"
        )
        figures[name] = {
            "convert_over_read": conv["seconds"] / read["seconds"],
            "store_over_read": store["seconds"] / read["seconds"],
            "rss_over_weights": rss,
            "rss_above_start_over_weights": above,
            "reference_error": error,
        }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
