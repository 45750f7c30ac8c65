"""Reorder ``(out, in, taps)`` source kernels into Keras's ``(taps, in, out)``, fast.

Caffe, Lasagne convolutions and torch store a kernel output-channel first; Keras wants it
output-channel last. Every converted weight goes through this one permutation:

- conv ``(out, in, kh, kw)`` is ``(out, in, kh*kw)`` -> ``(kh*kw, in, out)``, which is
  ``(kh, kw, in, out)``;
- the first dense layer after the convolutions, ``(out, C*H*W)`` flattened ``(C, H, W)``, is
  ``(out, C, H*W)`` -> ``(H*W, C, out)``, which is Keras's ``(H*W*C, out)`` with inputs
  flattened ``(H, W, C)``;
- any other dense layer ``(out, in)`` is ``(out, in, 1)`` -> ``(1, in, out)``.

Written by hand because nothing maintained does it well: NumPy's transposing copy walks one
element at a time with the source stride of a whole row (about 1 GB/s here, 0.4 s for VGG's
fc6 alone), and the frameworks' transposes measured slower still once their array
conversions are counted (TensorFlow 0.3 s, PyTorch 0.7 s, JAX 1.0 s for fc6). Copying in
small 2-D tiles keeps both sides in cache, and NumPy releases the GIL while it copies, so the
row blocks run on a few threads: fc6 takes about a third of the single-threaded time on two
cores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kzoo.errors import ConversionError

__all__ = [
    "as_float32",
    "conv_kernel",
    "dense_kernel_from_rows",
    "permute_kernel",
    "spatial_size",
    "swap_row_groups",
]

# Source rows per task: enough work to amortise a task, small enough to balance threads.
_BLOCK_ROWS = 128
# Tile shape of the 2-D transposes: 16 source rows (one 64-byte cache line per output row)
# by ~1,024 source columns (4 KB per source row: one page, friendly to the TLB).
_TILE_ROWS = 16
_TILE_COLUMNS = 1024
# Kernels smaller than this are converted on the calling thread: thread start-up costs more.
_PARALLEL_BYTES = 4 << 20
_MAX_THREADS = 8

Rows = Callable[[int, int], np.ndarray]
Done = Callable[[int, int], None]


def _threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_THREADS))


def permute_kernel(
    rows: Rows,
    out_channels: int,
    in_channels: int,
    taps: int,
    done: Done | None = None,
) -> np.ndarray:
    """Return a source ``(out, in, taps)`` kernel as a C-contiguous float32 ``(taps, in, out)``.

    Args:
        rows: ``rows(a, b)`` returns source rows ``a:b``: an array that reshapes to
            ``(b - a, in_channels, taps)`` (a view of a memory map, a safetensors slice...), so
            the whole source never needs a second in-memory copy. Called from worker
            threads, so it must be thread-safe.
        out_channels: Number of source rows (output channels / features).
        in_channels: Input channels (or input features of a plain dense layer).
        taps: Kernel positions per input channel (``kh * kw``; ``H * W`` for a dense layer
            that flattened a feature map; 1 otherwise).
        done: Optional ``done(a, b)`` called once source rows ``a:b`` are no longer needed
            (to release memory-mapped pages).

    Returns:
        The kernel in Keras order; any source dtype is cast to float32 while copying.
    """
    kernel = np.empty((taps, in_channels, out_channels), dtype=np.float32)
    starts = range(0, out_channels, _BLOCK_ROWS)

    def convert_block(start: int) -> None:
        stop = min(start + _BLOCK_ROWS, out_channels)
        source = np.asarray(rows(start, stop)).reshape(stop - start, in_channels, taps)
        if taps == 1:
            _transpose_2d(source[:, :, 0], kernel[0, :, start:stop])
        else:
            _permute_block(source, kernel[:, :, start:stop])
        if done is not None:
            done(start, stop)

    _run(convert_block, starts, kernel.nbytes)
    return kernel


def swap_row_groups(source: np.ndarray, groups: int) -> np.ndarray:
    """Reorder the rows of a ``(groups * per_group, n)`` matrix from group-major to group-minor.

    Row ``g * per_group + i`` of ``source`` becomes row ``i * groups + g``: Lasagne's first
    dense kernel ``(C*H*W, out)`` with rows ``(C, H, W)`` becomes Keras's rows ``(H, W, C)``
    with ``groups = C``. Every copy moves whole contiguous rows.

    Returns:
        A new C-contiguous float32 array of ``source``'s shape.
    """
    rows, n = source.shape
    per_group = rows // groups
    grouped = source.reshape(groups, per_group, n)
    result = np.empty((per_group, groups, n), dtype=np.float32)
    step = max(1, per_group // (4 * _threads()))

    def copy(first: int) -> None:
        result[first : first + step] = grouped[:, first : first + step].transpose(1, 0, 2)

    _run(copy, range(0, per_group, step), result.nbytes)
    return result.reshape(rows, n)


def _run(task: Callable[[int], None], starts: range, nbytes: int) -> None:
    """Call ``task(start)`` for each start, on worker threads when the array is big enough."""
    if nbytes < _PARALLEL_BYTES or _threads() == 1:
        for start in starts:
            task(start)
        return
    with ThreadPoolExecutor(_threads(), thread_name_prefix="kzoo-convert") as pool:
        for _ in pool.map(task, starts):  # re-raises the first error
            pass


def _transpose_2d(source: np.ndarray, target: np.ndarray) -> None:
    """``target[:] = source.T`` for a ``(rows, columns)`` source, tile by tile."""
    for row in range(0, source.shape[0], _TILE_ROWS):
        for column in range(0, source.shape[1], _TILE_COLUMNS):
            target[column : column + _TILE_COLUMNS, row : row + _TILE_ROWS] = source[
                row : row + _TILE_ROWS, column : column + _TILE_COLUMNS
            ].T


def _permute_block(source: np.ndarray, target: np.ndarray) -> None:
    """``target[:] = source.transpose(2, 1, 0)`` for ``(n, in, taps)`` -> ``(taps, in, n)``.

    Per group of input channels: a tiled 2-D transpose of ``(n, channels*taps)`` into a small
    buffer, then a copy that moves whole contiguous rows of ``n`` values into place.
    """
    n, in_channels, taps = source.shape
    channels = max(1, _TILE_COLUMNS // taps)
    buffer = np.empty(channels * taps * n, dtype=np.float32)
    for first in range(0, in_channels, channels):
        last = min(first + channels, in_channels)
        width = (last - first) * taps
        transposed = buffer[: width * n].reshape(width, n)
        _transpose_2d(source[:, first:last, :].reshape(n, width), transposed)
        target[:, first:last, :] = transposed.reshape(last - first, taps, n).transpose(1, 0, 2)


# -- the layouts every converter needs, on top of the permutation -----------------------------


def as_float32(array: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy-if-needed of ``array``."""
    return np.ascontiguousarray(array, dtype=np.float32)


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """Caffe/Lasagne/torch ``(out, in, h, w)`` -> Keras ``(h, w, in, out)``, float32.

    No spatial flip: all of them, and Keras, compute cross-correlation.
    """
    out_channels, in_channels, height, width = weight.shape
    kernel = permute_kernel(lambda a, b: weight[a:b], out_channels, in_channels, height * width)
    return kernel.reshape(height, width, in_channels, out_channels)


def spatial_size(in_features: int, channels: int, source_name: str) -> int:
    """Side of the square feature map that a first dense layer flattens.

    Raises:
        ConversionError: ``in_features`` is not ``channels * side * side``.
    """
    side = math.isqrt(in_features // channels) if channels and in_features % channels == 0 else 0
    if side == 0 or side * side * channels != in_features:
        raise ConversionError(
            f"source layer {source_name!r} has {in_features} inputs, which is not "
            f"{channels} channels times a square feature map; kzoo supports square inputs only. "
            f"Received: in_features={in_features}, channels={channels}"
        )
    return side


def dense_kernel_from_rows(
    rows: Callable[[int, int], np.ndarray],
    out_features: int,
    in_features: int,
    chw: tuple[int, int, int] | None = None,
    done: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Build a Keras ``(in, out)`` dense kernel from a source ``(out, in)`` matrix.

    Args:
        rows: ``rows(start, stop)`` returns source rows ``start:stop`` as a ``(k, in)`` array
            (a view of a memory map, a safetensors slice...), so the full source matrix never
            needs a second in-memory copy. Called from worker threads.
        out_features: Number of source rows.
        in_features: Number of source columns.
        chw: When the layer follows the last convolution, ``(C, H, W)``: the source
            flattened its input in ``(C, H, W)`` order, Keras flattens ``(H, W, C)``.
        done: Optional ``done(start, stop)``, called once rows ``start:stop`` are converted.

    Returns:
        The C-contiguous float32 kernel, shape ``(in_features, out_features)``.
    """
    channels, taps = (chw[0], chw[1] * chw[2]) if chw is not None else (in_features, 1)
    kernel = permute_kernel(rows, out_features, channels, taps, done)
    return kernel.reshape(in_features, out_features)
