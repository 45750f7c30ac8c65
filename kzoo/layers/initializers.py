"""kzoo's Keras initialisers: :class:`GaborInitializer`, first convolutions as edge detectors.

Trained first layers of image networks converge to oriented, band-pass edge detectors;
:class:`GaborInitializer` starts them there instead of from noise. Its public home is
:mod:`kzoo.layers`, whose import registers it with Keras for ``keras.saving.load_model``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

__all__ = ["GaborInitializer", "GaborParams"]

_PACKAGE = "kzoo"


@dataclass(frozen=True)
class GaborParams:
    """One filter of a Gabor bank: what :class:`GaborInitializer` puts in an output channel.

    Attributes:
        theta: Orientation of the wave vector in radians, in ``[0, pi)``; x is the column
            offset (rightwards), y the row offset (downwards). The filter responds most to
            edges and gratings whose stripes run perpendicular to ``theta``.
        wavelength: Period of the carrier in pixels.
        phase: Phase offset of the carrier in radians (0: even/centre-on, pi/2: odd/edge).
    """

    theta: float
    wavelength: float
    phase: float


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GaborInitializer(keras.initializers.Initializer):
    """Fills first-layer conv kernels with a bank of Gabor filters.

    Trained first layers of image networks converge to oriented, band-pass edge detectors;
    starting there instead of from noise is a classic trick for small data sets. Output
    channel ``j`` gets orientation ``j % orientations``, then the next wavelength, then the
    next phase; once the bank of ``orientations * len(wavelengths) * len(phases)`` filters is
    used up, further channels get random parameters drawn from ``seed``. Each filter is the
    same on every input channel, has zero mean and unit L2 norm (times ``gain``).

    Args:
        orientations: Number of evenly spaced orientations in ``[0, pi)``.
        wavelengths: Carrier periods in pixels; default: ``3`` wavelengths spread geometrically
            from 3 px to the kernel size (at least 4 px).
        phases: Carrier phases in radians.
        sigma_ratio: Gaussian envelope width as a fraction of the wavelength (0.56 gives the
            one-octave bandwidth of simple cells).
        aspect: Envelope aspect ratio along the stripes (``gamma``; 1 is round).
        gain: Norm of each filter.
        seed: Seed for the filters beyond the bank; None draws fresh ones on every call.

    Example:
        >>> conv = keras.layers.Conv2D(64, 7, kernel_initializer=GaborInitializer())
    """

    # Saved models record the class's module next to its registered name; keep the public
    # home, kzoo.layers, so files written before and after the package split are identical.
    __module__ = "kzoo.layers"

    def __init__(
        self,
        orientations: int = 8,
        wavelengths: Sequence[float] | None = None,
        phases: Sequence[float] = (0.0, math.pi / 2),
        sigma_ratio: float = 0.56,
        aspect: float = 0.5,
        gain: float = 1.0,
        seed: int | None = None,
    ) -> None:
        if int(orientations) < 1 or not phases or (wavelengths is not None and not wavelengths):
            raise ValueError(
                f"GaborInitializer needs at least one orientation, wavelength and phase. "
                f"Received: orientations={orientations!r}, wavelengths={wavelengths!r}, "
                f"phases={phases!r}"
            )
        if wavelengths is not None and min(wavelengths) <= 0:
            raise ValueError(f"Wavelengths must be positive. Received: {wavelengths!r}")
        self.orientations = int(orientations)
        self.wavelengths = None if wavelengths is None else [float(w) for w in wavelengths]
        self.phases = [float(p) for p in phases]
        self.sigma_ratio = float(sigma_ratio)
        self.aspect = float(aspect)
        self.gain = float(gain)
        self.seed = seed

    def _wavelengths(self, size: int) -> list[float]:
        if self.wavelengths is not None:
            return self.wavelengths
        # Below 3 px an odd-phase carrier aliases to nothing on the pixel grid.
        return [float(w) for w in np.geomspace(3.0, max(float(size), 4.0), 3)]

    def bank(self, filters: int, kernel_size: tuple[int, int] = (7, 7)) -> list[GaborParams]:
        """The parameters of the first ``filters`` output channels, in channel order."""
        waves = self._wavelengths(max(kernel_size))
        params = []
        n_theta, n_wave = self.orientations, len(waves)
        for j in range(min(filters, n_theta * n_wave * len(self.phases))):
            params.append(
                GaborParams(
                    theta=math.pi * (j % n_theta) / n_theta,
                    wavelength=waves[(j // n_theta) % n_wave],
                    phase=self.phases[j // (n_theta * n_wave)],
                )
            )
        rng = np.random.default_rng(self.seed)
        for _ in range(filters - len(params)):
            theta, wave, phase = rng.uniform([0, min(waves), 0], [math.pi, max(waves), 2 * math.pi])
            params.append(GaborParams(float(theta), float(wave), float(phase)))
        return params

    def kernel(self, shape: Sequence[int]) -> np.ndarray:
        """The kernel as a float32 NumPy array of ``shape`` ``(kh, kw, in, out)``."""
        if len(shape) != 4:
            raise ValueError(
                "GaborInitializer fills Conv2D kernels of shape (kh, kw, in, out). "
                f"Received: shape={tuple(shape)}"
            )
        kh, kw, cin, cout = (int(s) for s in shape)
        y, x = np.meshgrid(
            np.arange(kh) - (kh - 1) / 2, np.arange(kw) - (kw - 1) / 2, indexing="ij"
        )
        out = np.empty((kh, kw, cout))
        for j, p in enumerate(self.bank(cout, (kh, kw))):
            along = x * math.cos(p.theta) + y * math.sin(p.theta)
            across = -x * math.sin(p.theta) + y * math.cos(p.theta)
            sigma = self.sigma_ratio * p.wavelength
            envelope = np.exp(-(along**2 + (self.aspect * across) ** 2) / (2 * sigma**2))
            g = envelope * np.cos(2 * math.pi * along / p.wavelength + p.phase)
            g -= g.mean()  # no response to flat regions: an edge/texture detector
            norm = np.linalg.norm(g)
            out[:, :, j] = g / norm if norm > 1e-12 else 0.0
        # Same filter on every input channel; normalise the whole (kh, kw, in) volume.
        kernel = np.repeat(out[:, :, None, :], cin, axis=2) / math.sqrt(cin)
        return (kernel * self.gain).astype(np.float32)

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        return keras.ops.convert_to_tensor(self.kernel(shape), dtype=dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "orientations": self.orientations,
                "wavelengths": self.wavelengths,
                "phases": self.phases,
                "sigma_ratio": self.sigma_ratio,
                "aspect": self.aspect,
                "gain": self.gain,
                "seed": self.seed,
            }
        )
        return config
