"""The tiled, threaded kernel reorders every converter relies on, against plain NumPy."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzoo.converters import _layout
from kzoo.converters._layout import permute_kernel, swap_row_groups


@pytest.fixture
def tiny_tiles(monkeypatch):
    """Force threads and ragged tiles on small arrays."""
    monkeypatch.setattr(_layout, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(_layout, "_BLOCK_ROWS", 4)
    monkeypatch.setattr(_layout, "_TILE_ROWS", 3)
    monkeypatch.setattr(_layout, "_TILE_COLUMNS", 5)
    monkeypatch.setattr(_layout, "_threads", lambda: 3)


def _random(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@settings(max_examples=40, deadline=None)
@given(
    out_channels=st.integers(1, 40),
    in_channels=st.integers(1, 12),
    taps=st.sampled_from([1, 4, 9, 49]),
)
def test_permute_kernel_is_transpose_2_1_0(out_channels, in_channels, taps):
    source = _random((out_channels, in_channels, taps))
    for forced in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            if forced:
                patch.setattr(_layout, "_PARALLEL_BYTES", 0)
                patch.setattr(_layout, "_BLOCK_ROWS", 3)
                patch.setattr(_layout, "_TILE_ROWS", 2)
                patch.setattr(_layout, "_TILE_COLUMNS", 5)
                patch.setattr(_layout, "_threads", lambda: 2)
            got = permute_kernel(lambda a, b: source[a:b], out_channels, in_channels, taps)
        assert got.flags.c_contiguous and got.dtype == np.float32
        np.testing.assert_array_equal(got, source.transpose(2, 1, 0))


@pytest.mark.parametrize(
    ("shape", "taps"),
    [((700, 64 * 49), 49), ((512, 256, 3, 3), 9), ((1100, 1500), 1)],
    ids=["fc6-like", "conv", "dense"],
)
def test_full_size_kernels_take_the_threaded_path_and_match(shape, taps):
    source = _random(shape)
    assert source.nbytes >= _layout._PARALLEL_BYTES
    out_channels, in_channels = shape[0], int(np.prod(shape[1:])) // taps
    seen = set()

    def rows(a, b):
        seen.add(threading.current_thread().name)
        return source[a:b]

    got = permute_kernel(rows, out_channels, in_channels, taps)
    expected = source.reshape(out_channels, in_channels, taps).transpose(2, 1, 0)
    np.testing.assert_array_equal(got, expected)
    if _layout._threads() > 1:
        assert any(name.startswith("kzoo-convert") for name in seen)


@pytest.mark.parametrize("dtype", ["<f8", ">f4", "<f2"])
def test_other_source_dtypes_are_cast_to_float32(dtype, tiny_tiles):
    source = _random((9, 6, 4)).astype(dtype)
    got = permute_kernel(lambda a, b: source[a:b], 9, 6, 4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, source.astype(np.float32).transpose(2, 1, 0))


def test_done_reports_every_row_exactly_once(tiny_tiles):
    source = _random((23, 5, 9))
    finished = []
    lock = threading.Lock()

    def done(a, b):
        with lock:
            finished.append((a, b))

    permute_kernel(lambda a, b: source[a:b], 23, 5, 9, done)
    covered = sorted(row for a, b in finished for row in range(a, b))
    assert covered == list(range(23))


def test_an_error_reading_rows_reaches_the_caller(tiny_tiles):
    source = _random((20, 3, 4))

    def rows(a, b):
        if a >= 8:
            raise OSError("the disk went away")
        return source[a:b]

    with pytest.raises(OSError, match="the disk went away"):
        permute_kernel(rows, 20, 3, 4)


@settings(max_examples=30, deadline=None)
@given(groups=st.integers(1, 16), per_group=st.integers(1, 20), width=st.integers(1, 9))
def test_swap_row_groups_matches_a_row_gather(groups, per_group, width):
    source = _random((groups * per_group, width), np.float64)
    order = np.arange(groups * per_group).reshape(groups, per_group).T.reshape(-1)
    for forced in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            if forced:
                patch.setattr(_layout, "_PARALLEL_BYTES", 0)
                patch.setattr(_layout, "_threads", lambda: 3)
            got = swap_row_groups(source, groups)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, source[order].astype(np.float32))
