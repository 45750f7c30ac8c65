"""How much faster is ``kzoo explain`` than importing Keras and building the model?

Each measurement is a fresh Python process, timed from the outside (wall clock), so the
figures include interpreter start-up and imports - what a user waits for at the shell:

* ``kzoo explain`` of VGG-19 (``python -m kzoo explain 224x224x3:...``), which never imports
  Keras;
* ``kzoo explain resnet152`` (a 517-layer residual graph), also without Keras;
* the baseline: ``import keras`` and ``keras.applications.VGG19(weights=None)``, the usual way
  to see a network's shapes and parameter count.

Runs are interleaved; medians are reported. The last line is the speed-up.

    python benchmarks/bench_explain.py [--repeats 5]

Target: explain < 0.2 s wall (VGG-19 and ResNet-152), i.e. >= 20x faster than the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

VGG19 = "64C3x2-MP2-128C3x2-MP2-256C3x4-MP2-512C3x4-MP2-512C3x4-MP2-FC4096x2-FC1000"
KERAS_VGG19_PARAMS = 143_667_240
KERAS_RESNET152_PARAMS = 60_419_944  # keras.applications.ResNet152(weights=None).count_params()

EXPLAIN = [sys.executable, "-m", "kzoo", "explain", f"224x224x3:{VGG19}"]
EXPLAIN_RESNET = [sys.executable, "-m", "kzoo", "explain", "resnet152"]
BASELINE = [
    sys.executable,
    "-c",
    "import keras; print(keras.applications.VGG19(weights=None).count_params())",
]
NO_KERAS_CHECK = (
    "import sys; from kzoo.cli import main; main(['explain', '224x224x3:" + VGG19 + "']); "
    "main(['explain', 'resnet152']); "
    "print('keras imported:', 'keras' in sys.modules, file=sys.stderr)"
)


# As an installed package runs: with its bytecode cached (an environment that forbids writing
# .pyc files would time compiling kzoo's sources on every start instead).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=ENV)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    _, table = wall(EXPLAIN)  # warm the file system and bytecode caches for both
    wall(EXPLAIN_RESNET)
    _, baseline_out = wall(BASELINE)
    print(table.rstrip())
    explained = _total(table)
    print(
        f"\nexplain total params: {explained:,}; keras.applications.VGG19: "
        f"{int(baseline_out.split()[-1]):,} (expected {KERAS_VGG19_PARAMS:,})"
    )
    _, resnet_table = wall(EXPLAIN_RESNET)
    print(
        f"explain resnet152 total params: {_total(resnet_table):,} "
        f"(keras.applications.ResNet152: {KERAS_RESNET152_PARAMS:,})"
    )
    check = subprocess.run([sys.executable, "-c", NO_KERAS_CHECK], capture_output=True, text=True)
    print(check.stderr.strip().splitlines()[-1] if check.stderr.strip() else "check failed")

    python_only, explain, resnet, baseline = [], [], [], []
    for _ in range(args.repeats):
        python_only.append(wall([sys.executable, "-c", "pass"])[0])
        explain.append(wall(EXPLAIN)[0])
        resnet.append(wall(EXPLAIN_RESNET)[0])
        baseline.append(wall(BASELINE)[0])
    t_py, t_explain, t_resnet, t_base = (
        statistics.median(v) for v in (python_only, explain, resnet, baseline)
    )
    print(f"\nwall time, fresh process, median of {args.repeats}:")
    print(f"  python -c pass                        {t_py:7.3f} s")
    print(f"  kzoo explain vgg19                    {t_explain:7.3f} s   (target < 0.2 s)")
    print(f"  kzoo explain resnet152                {t_resnet:7.3f} s   (target < 0.2 s)")
    print(f"  import keras + VGG19(weights=None)    {t_base:7.3f} s")
    print(f"speed-up (baseline / kzoo explain, target >= 20): {t_base / t_explain:.1f}x")
    print(f"resnet152 over vgg19 explain (graph planning cost): {t_resnet / t_explain:.2f}x")


def _total(table: str) -> int:
    return int(table.strip().splitlines()[-1].split()[-1].replace(",", ""))


if __name__ == "__main__":
    main()
