"""Pictures that show what a network learnt and where it looks.

* :func:`plot_kernels`: the first convolution's kernels as an image grid. Trained on natural
  images they look like Gabor filters (oriented edges and stripes); noise means not trained.
* :func:`plot_feature_maps`: a layer's activations for one image, one tile per channel
  (Zeiler & Fergus 2014): what each filter responds to, and where. :func:`feature_maps`
  returns them as an array, :func:`feature_grid` tiles them.
* :func:`plot_saliency`: how much each input pixel moves the class score, i.e. what the network
  looks at (a classifier that looks at the water instead of the whale has learnt a shortcut).
* :func:`plot_occlusion`: how much the class score drops when a grey patch covers each region
  (Zeiler & Fergus 2014); no gradients, so it shows whole regions the class depends on.
  :func:`occlusion_map` returns the map as an array.
* :func:`plot_history`: training curves, with the boundary between the two transfer phases.
* :func:`plot_lr_finder`, :func:`plot_confusion_matrix`, :func:`plot_image_grid` (the top
  losses with their saliency), :func:`plot_reliability`: the practitioner's loop
  (:mod:`.evaluation`; :mod:`kzoo.loop` computes what they show).

Layers are found inside nested models too (a transfer model's base), by name or by path
(``"vgg19/block4_conv2"``). :mod:`.saliency` holds the saliency maths as NumPy arrays,
:mod:`.figures` the feature maps and the drawing. matplotlib is an optional dependency
(``pip install 'kzoo[plot]'``).
"""

from __future__ import annotations

from kzoo.plots.evaluation import (
    plot_confusion_matrix,
    plot_image_grid,
    plot_lr_finder,
    plot_reliability,
)
from kzoo.plots.figures import (
    feature_grid,
    feature_maps,
    kernel_grid,
    load_image,
    plot_feature_maps,
    plot_history,
    plot_kernels,
    plot_occlusion,
    plot_saliency,
)
from kzoo.plots.saliency import input_gradient, occlusion_map, saliency_map

__all__ = [
    "feature_grid",
    "feature_maps",
    "input_gradient",
    "kernel_grid",
    "load_image",
    "occlusion_map",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_history",
    "plot_image_grid",
    "plot_kernels",
    "plot_lr_finder",
    "plot_occlusion",
    "plot_reliability",
    "plot_saliency",
    "saliency_map",
]
