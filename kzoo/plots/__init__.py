"""Pictures that show what a network learnt and where it looks.

* :func:`plot_kernels`: the first convolution's kernels as an image grid. Trained on natural
  images they look like Gabor filters (oriented edges and stripes); noise means not trained.
* :func:`plot_saliency`: how much each input pixel moves the class score, i.e. what the network
  looks at (a classifier that looks at the water instead of the whale has learnt a shortcut).
* :func:`plot_history`: training curves, with the boundary between the two transfer phases.

Layers are found inside nested models too (a transfer model's base). :mod:`.saliency` holds
the maths as NumPy arrays, :mod:`.figures` the drawing. matplotlib is an optional dependency
(``pip install 'kzoo[plot]'``).
"""

from __future__ import annotations

from kzoo.plots.figures import kernel_grid, load_image, plot_history, plot_kernels, plot_saliency
from kzoo.plots.saliency import input_gradient, saliency_map

__all__ = [
    "input_gradient",
    "kernel_grid",
    "load_image",
    "plot_history",
    "plot_kernels",
    "plot_saliency",
    "saliency_map",
]
