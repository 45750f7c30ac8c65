"""Transfer learning in a few lines: cut a pretrained base, freeze it, add a DSL head, train twice.

>>> clf = kzoo.transfer("vgg19", head="GAP-FC256+D0.5-FC5", input_shape=(160, 160, 3))
>>> clf.fit(train_ds, validation_data=val_ds, frozen_epochs=3, fine_tune_epochs=5)
>>> clf.model.save("flowers.keras")

``clf.model`` is ``inputs -> [augmentation] -> base(x, training=False) -> head``. The base keeps
its in-graph preprocessing, so users feed RGB 0-255. Phase 1 trains the head with the base
frozen, on cached base features when that is provably equivalent; phase 2 unfreezes all or
part of the base and trains at a lower learning rate, pretrained layers lower still. Both
phases recompile with a fresh optimizer, so no stale ``trainable`` state is ever trained.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np

from kzoo.errors import TransferError

__all__ = ["Transfer", "TransferHistory", "transfer"]

logger = logging.getLogger("kzoo")

BN_POLICIES = ("frozen", "train")
CACHE_CHOICES = ("auto", True, False)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# Layers that start a classifier: the default cut keeps everything before the first of them.
_BOUNDARY_LAYERS = (
    keras.layers.Flatten,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
_TOP_LAYERS = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation)
# Ops in a tf.data graph that make its elements differ between passes (or hide what they do).
_RANDOM_TF_OPS = re.compile(r"Random|Multinomial|Rng|TruncatedNormal|SampleDistorted|PyFunc")
_HEAD_STEPS_PER_EXECUTION = 16


def transfer(
    base: str | keras.Model,
    head: str | keras.Model = "GAP-FC256+D0.5-FC5",
    *,
    cut: str | None = None,
    input_shape: Sequence[int] | None = None,
    weights: str | None = "imagenet",
    bn: str = "frozen",
    cache_features: str | bool = "auto",
    precision: str | None = None,
    augmentation: keras.layers.Layer | Sequence[keras.layers.Layer] | None = None,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float | None = None,
    pretrained_lr_multiplier: float = 0.1,
    loss: Any = None,
    metrics: Sequence[Any] | None = None,
    manifest: Any = None,
    name: str | None = None,
) -> Transfer:
    """Cut a pretrained base, freeze it and put a new head from the DSL on top.

    Args:
        base: A zoo name (``"vgg19"``, loaded without its top and with its preprocessing
            layer), or any Keras model (a ``kzoo.load``-ed or ``kzoo.build``-ed one included).
        head: A DSL string built on the base's output shape with layer names prefixed
            ``head_`` (``"GAP-FC256+D0.5-FC5"``), or a Keras model taking the base's output.
        cut: The name of the last base layer to keep. Default: the head boundary (for a zoo
            name, the manifest's; for a Keras model, the layer before its first Flatten or
            global pooling, else before its trailing Dense/Dropout layers).
        input_shape: The image shape ``(H, W, C)``; any size works once the FC head is gone.
        weights: The zoo weights tag when ``base`` is a name (None for random weights).
        bn: ``"frozen"`` (default, the Keras guide's policy: the base runs with
            ``training=False``, so BatchNorm keeps its statistics in both phases) or
            ``"train"`` (fastai's: unfrozen BatchNorm layers update their statistics).
        cache_features: ``"auto"`` caches the base's output for the frozen phase where that
            is provably the same as running it every epoch, ``True`` insists (and refuses
            augmented inputs), ``False`` never caches.
        precision: ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"`` for the base;
            default mixed_bfloat16 on a GPU and float32 on a CPU. The head, softmax included,
            always computes in float32. A base given as a Keras model keeps the precision it
            was built with.
        augmentation: Random preprocessing layer(s) placed before the base, active only while
            training. Their presence turns feature caching off.
        optimizer: An optimizer name or an instance used as a template; every phase gets a
            fresh one built from it.
        learning_rate: Phase 1 (head) learning rate.
        fine_tune_learning_rate: Phase 2 learning rate of the new layers; default
            ``learning_rate / 10``.
        pretrained_lr_multiplier: Phase 2 learning rate of pretrained layers relative to the
            new ones (0.1: as in the talk's 3e-4 / 3e-5).
        loss: Default: sparse categorical cross-entropy for a softmax head, binary
            cross-entropy for a sigmoid one, mean squared error otherwise.
        metrics: Default ``["accuracy"]`` for classifiers.
        manifest: Passed to ``kzoo.load`` when ``base`` is a name.
        name: The combined model's name.

    Returns:
        A :class:`Transfer`; train it with ``fit`` or ``fit_frozen`` and ``fine_tune``.

    Raises:
        TransferError: A bad cut point, policy, precision or input shape.
    """
    _check_choice("bn", bn, BN_POLICIES)
    _check_choice("cache_features", cache_features, CACHE_CHOICES)
    if precision is not None:
        _check_choice("precision", precision, PRECISIONS)
    precision = precision or ("mixed_bfloat16" if _has_gpu() else "float32")
    source = _resolve_base(base, weights, input_shape, precision, manifest)
    base_model = _cut(source, cut)
    feature_shape = tuple(base_model.output.shape[1:])
    head_model = _resolve_head(head, feature_shape)
    return Transfer(
        base_model,
        head_model,
        input_shape=_input_shape(base_model, input_shape),
        bn=bn,
        cache_features=cache_features,
        augmentation=augmentation,
        optimizer=optimizer,
        learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate,
        pretrained_lr_multiplier=pretrained_lr_multiplier,
        loss=loss,
        metrics=metrics,
        precision=precision,
        name=name,
    )


class TransferHistory(keras.callbacks.History):
    """One History across both phases.

    Attributes:
        history: Metric name -> one value per epoch, both phases in order.
        epoch: The epoch indices.
        phase_boundary: The number of epochs trained before fine-tuning started (index of
            the first fine-tuning epoch in ``epoch``); None before any fine-tuning.
        phases: ``"frozen"`` or ``"fine_tune"`` per epoch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.phases: list[str] = []
        self.phase_boundary: int | None = None

    def _extend(self, phase: str, run: keras.callbacks.History) -> None:
        if phase == "fine_tune" and self.phase_boundary is None:
            self.phase_boundary = len(self.epoch)
        for key, values in run.history.items():
            column = self.history.setdefault(key, [math.nan] * len(self.epoch))
            column.extend(float(v) for v in values)
        self.epoch.extend(run.epoch)
        self.phases.extend([phase] * len(run.epoch))
        for column in self.history.values():  # metrics missing from this phase
            column.extend([math.nan] * (len(self.epoch) - len(column)))


class Transfer:
    """A frozen base and a new head, trained in two phases.

    Attributes:
        model: The combined Functional model, ``inputs -> base(x, training=False) -> head``;
            save it with ``model.save("name.keras")``.
        base: The cut, pretrained part (a Functional sub-model of ``model``).
        head: The new layers (a Functional sub-model of ``model``, layer names ``head_*``).
        history: The :class:`TransferHistory` of every phase run so far.
    """

    def __init__(
        self,
        base: keras.Model,
        head: keras.Model,
        *,
        input_shape: tuple[int | None, ...],
        bn: str = "frozen",
        cache_features: str | bool = "auto",
        augmentation: keras.layers.Layer | Sequence[keras.layers.Layer] | None = None,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        learning_rate: float = 1e-3,
        fine_tune_learning_rate: float | None = None,
        pretrained_lr_multiplier: float = 0.1,
        loss: Any = None,
        metrics: Sequence[Any] | None = None,
        precision: str = "float32",
        name: str | None = None,
    ) -> None:
        self.base, self.head, self.bn = base, head, bn
        self.cache_features = cache_features
        self.optimizer, self.learning_rate = optimizer, learning_rate
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.pretrained_lr_multiplier = pretrained_lr_multiplier
        self.precision = precision
        self.loss, self.metrics = _default_loss(head, loss, metrics)
        self.history = TransferHistory()
        self._trained: keras.Model | None = None  # the model compiled last (full or head)
        self._strategy = _current_tf_strategy()
        if isinstance(augmentation, Sequence):
            augmentation = keras.Sequential(list(augmentation), name="augmentation")
        self.augmentation = augmentation
        inputs = keras.Input(input_shape, name="image")
        x = augmentation(inputs) if augmentation is not None else inputs
        # The Keras guide's training=False. Keras 3's Functional.call overrides it with the
        # outer model's flag, so _unfreeze() also keeps BatchNorm layers frozen (bn="frozen").
        x = base(x, training=False) if bn == "frozen" else base(x)
        self.model = keras.Model(inputs, head(x), name=name or f"{base.name}_transfer")
        self._freeze()

    # -- the two phases -------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        frozen_epochs: int = 3,
        fine_tune_epochs: int = 3,
        unfreeze: str | int = "all",
        **kwargs: Any,
    ) -> TransferHistory:
        """Train the head with the base frozen, then fine-tune; see ``fit_frozen``/``fine_tune``.

        Args:
            x: Inputs (array, ``tf.data.Dataset`` of ``(x, y)``, generator, PyDataset).
            y: Targets when ``x`` is an array.
            frozen_epochs: Phase 1 epochs (0 skips it).
            fine_tune_epochs: Phase 2 epochs (0 skips it).
            unfreeze: Which part of the base phase 2 trains (see ``fine_tune``).
            **kwargs: Passed to both phases (``validation_data``, ``batch_size``,
                ``callbacks``, ``verbose``, ``diagnostics``, other ``Model.fit`` arguments),
                except ``cache_features``/``head_batch_size`` (phase 1 only) and
                ``learning_rate``/``pretrained_lr_multiplier`` (phase 2 only).

        Returns:
            The history of both phases, with ``phase_boundary`` set.
        """
        frozen_only = {
            k: kwargs.pop(k) for k in ("cache_features", "head_batch_size") if k in kwargs
        }
        tune_only = {
            k: kwargs.pop(k) for k in ("learning_rate", "pretrained_lr_multiplier") if k in kwargs
        }
        if frozen_epochs:
            self.fit_frozen(x, y, epochs=frozen_epochs, **frozen_only, **kwargs)
            if self.model.stop_training:  # early stopping ends the whole run
                return self.history
        if fine_tune_epochs:
            self.fine_tune(
                x, y, epochs=fine_tune_epochs, unfreeze=unfreeze, **tune_only, **kwargs
            )  # fmt: skip
        return self.history

    def fit_frozen(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 3,
        validation_data: Any = None,
        batch_size: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        cache_features: str | bool | None = None,
        head_batch_size: int | None = None,
        diagnostics: bool = True,
        verbose: Any = "auto",
        **fit_kwargs: Any,
    ) -> keras.callbacks.History:
        """Phase 1: train only the head, the base frozen.

        Args:
            x, y, validation_data, batch_size, callbacks, verbose, fit_kwargs: As for
                ``keras.Model.fit``.
            epochs: Epochs to train.
            cache_features: Overrides the ``transfer()`` setting for this call.
            head_batch_size: Batch size for the head on cached features (default
                ``batch_size``: the same updates as without caching; larger is faster).
            diagnostics: Attach ``kzoo.TrainingDiagnostics``.

        Returns:
            This phase's ``History``.
        """
        self._freeze()
        setting = self.cache_features if cache_features is None else cache_features
        _check_choice("cache_features", setting, CACHE_CHOICES)
        callbacks = _with_diagnostics(callbacks, diagnostics)
        offset = len(self.history.epoch)
        args = {"epochs": offset + epochs, "initial_epoch": offset, "verbose": verbose}
        with self._scope():
            if self._cache_plan(x, validation_data, setting, fit_kwargs):
                run = self._fit_cached(
                    x, y, validation_data, batch_size, head_batch_size, callbacks, args, fit_kwargs
                )
            else:
                self._compile(self.model, self.learning_rate)
                self.model.stop_training = False
                run = self.model.fit(
                    x, y, validation_data=validation_data, batch_size=batch_size,
                    callbacks=callbacks, **args, **fit_kwargs,
                )  # fmt: skip
        self.history._extend("frozen", run)
        return run

    def fine_tune(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 3,
        unfreeze: str | int = "all",
        learning_rate: float | None = None,
        pretrained_lr_multiplier: float | None = None,
        validation_data: Any = None,
        batch_size: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        diagnostics: bool = True,
        verbose: Any = "auto",
        **fit_kwargs: Any,
    ) -> keras.callbacks.History:
        """Phase 2: unfreeze part of the base and train everything at a lower learning rate.

        Args:
            x, y, validation_data, batch_size, callbacks, verbose, fit_kwargs: As for
                ``keras.Model.fit``.
            epochs: Epochs to train.
            unfreeze: ``"all"``; an int N, the top N blocks (``block5``, ``block4``, ...; a
                weighted layer counts as a block when names carry no ``blockN_`` prefix); or
                a layer name: that layer and every layer after it.
            learning_rate: The new layers' rate; default ``fine_tune_learning_rate``, else a
                tenth of the phase 1 rate.
            pretrained_lr_multiplier: Pretrained layers' rate relative to ``learning_rate``.
            diagnostics: Attach ``kzoo.TrainingDiagnostics``.

        Returns:
            This phase's ``History``.
        """
        selected = self._unfreeze(unfreeze)
        lr = learning_rate or self.fine_tune_learning_rate or self.learning_rate / 10
        ratio = self.pretrained_lr_multiplier
        ratio = ratio if pretrained_lr_multiplier is None else pretrained_lr_multiplier
        logger.info(
            "fine-tuning %d base layers at learning rate %g (pretrained: %g)",
            len(selected), lr, lr * ratio,
        )  # fmt: skip
        offset = len(self.history.epoch)
        with self._scope():
            pretrained = [v for v in self.base.trainable_variables]
            self._compile(self.model, lr, {id(v): ratio for v in pretrained})
            self.model.stop_training = False
            run = self.model.fit(
                x, y, validation_data=validation_data, batch_size=batch_size,
                callbacks=_with_diagnostics(callbacks, diagnostics),
                epochs=offset + epochs, initial_epoch=offset, verbose=verbose, **fit_kwargs,
            )  # fmt: skip
        self.history._extend("fine_tune", run)
        return run

    def learning_rates(self) -> dict[str, float]:
        """Variable path -> the learning rate the current optimizer applies to it."""
        model = self._trained
        if model is None:
            return {}
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        base = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        scale = getattr(optimizer, "kzoo_lr_multipliers", {})
        return {v.path: base * scale.get(id(v), 1.0) for v in model.trainable_variables}

    # -- freezing ------------------------------------------------------------------------

    def _freeze(self) -> None:
        self.base.trainable = False
        self.head.trainable = True

    def _unfreeze(self, unfreeze: str | int) -> list[str]:
        selected = select_layers(self.base, unfreeze)
        self.base.trainable = True  # sets every sub-layer; then re-freeze the rest
        for layer in self.base.layers:
            layer.trainable = layer.name in selected
        if self.bn == "frozen":
            # A Functional model passes its own `training` flag to every layer it calls, so
            # the recorded training=False does not survive fit(): a frozen BatchNorm (Keras 3
            # runs those in inference mode) is what keeps the statistics.
            for layer in _walk(self.base):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        self.head.trainable = True
        return selected

    # -- feature caching ---------------------------------------------------------------------

    def _cache_plan(self, x: Any, validation_data: Any, setting: Any, fit_kwargs: dict) -> bool:
        if setting is False:
            return False
        reasons = self._random_stages()
        reasons += [r for r in (_input_problem(x), _input_problem(validation_data)) if r]
        if "steps_per_epoch" in fit_kwargs:
            reasons.append("steps_per_epoch is set (epochs are not passes over the data)")
        if not reasons:
            logger.info("frozen phase: caching the base's features (one forward pass)")
            return True
        message = "cannot cache the base's features: " + "; ".join(reasons)
        if setting is True:
            raise TransferError(
                f"{message}. Cached features would silently drop the randomness. Use "
                "cache_features='auto' or False. Received: cache_features=True"
            )
        logger.warning("%s; training the frozen phase on the full model instead", message)
        return False

    def _random_stages(self) -> list[str]:
        reasons = []
        if self.augmentation is not None and _random_layers(self.augmentation):
            names = ", ".join(_random_layers(self.augmentation))
            reasons.append(f"the inputs are augmented by random layers ({names})")
        if _random_layers(self.base):  # fit() runs them in training mode, predict() does not
            names = ", ".join(_random_layers(self.base))
            reasons.append(f"the base has random layers ({names})")
        return reasons

    def _fit_cached(self, x, y, validation_data, batch_size, head_batch_size, callbacks, args, kw):
        predict_batch = max(batch_size or 32, 128)
        features, targets, own_batch = _extract(self.base, x, y, predict_batch)
        # a dataset brings its own batching: keep it, so the head gets the same updates
        batch = head_batch_size or batch_size or own_batch or 32
        if validation_data is not None:
            vx, vy = _unpack_validation(validation_data)
            vf, (vt, vw), _ = _extract(self.base, vx, vy, predict_batch)
            validation_data = (vf, vt) if vw is None else (vf, vt, vw)
        # Several steps per call keep the tiny head from being overhead-bound (the updates are
        # the same); Keras' multi-step loop fails under tf.distribute, so not there.
        steps = min(_HEAD_STEPS_PER_EXECUTION, math.ceil(len(features) / batch))
        steps = 1 if self._strategy is not None else steps
        self._compile(self.head, self.learning_rate, steps=steps)
        self.model.stop_training = self.head.stop_training = False
        callbacks = [_OnFullModel(c, self.model) for c in callbacks]
        run = self.head.fit(
            features, targets[0], sample_weight=targets[1], validation_data=validation_data,
            batch_size=batch, callbacks=callbacks, **args, **kw,
        )  # fmt: skip
        # so that clf.model.evaluate()/predict() work right after a cached phase
        self._compile(self.model, self.learning_rate)
        self.model.stop_training = self.head.stop_training  # compile() resets it
        return run

    # -- compiling ------------------------------------------------------------------------

    def _compile(self, model: keras.Model, lr: float, multipliers=None, steps: int = 1) -> None:
        optimizer = _fresh_optimizer(self.optimizer, lr)
        if multipliers and any(m != 1.0 for m in multipliers.values()):
            _scale_learning_rates(optimizer, multipliers)
        if self.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(
            optimizer=optimizer, loss=self.loss, metrics=self.metrics, steps_per_execution=steps
        )
        self._trained = model

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        # Variables (optimizer slots included) must be created in the strategy they will be
        # used with, even when fit() is called outside the user's `with strategy.scope()`.
        if self._strategy is None:
            yield
            return
        with self._strategy.scope():
            yield


# -- building ------------------------------------------------------------------------------


def _resolve_base(base, weights, input_shape, precision, manifest) -> keras.Model:
    if isinstance(base, str):
        from kzoo.zoo import load

        with _dtype_policy(precision):
            return load(
                base, weights=weights, include_top=False, preprocessing=True,
                input_shape=None if input_shape is None else tuple(input_shape),
                manifest=manifest,
            )  # fmt: skip
    if isinstance(base, keras.Model):
        if not isinstance(base, keras.Sequential) and not hasattr(base, "_nodes_by_depth"):
            raise TransferError(
                "the base must be a Functional or Sequential model (a subclassed model has no "
                f"layer graph to cut). Received: base={type(base).__name__}"
            )
        return base
    raise TransferError(f"base must be a zoo model name or a keras.Model. Received: base={base!r}")


def _cut(model: keras.Model, cut: str | None) -> keras.Model:
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    names = [la.name for la in layers]
    if not layers:
        raise TransferError(f"the base {model.name!r} has no layers to transfer")
    cut = cut or _default_cut(layers)
    if cut not in names:
        raise TransferError(
            f"cut={cut!r} is not a layer of {model.name!r}; valid cut points (the last layer "
            f"to keep): {', '.join(names)}. Received: cut={cut!r}"
        )
    if cut == names[-1]:
        return model
    return keras.Model(model.inputs, model.get_layer(cut).output, name=f"{model.name}_base")


def _default_cut(layers: list[keras.layers.Layer]) -> str:
    for i, layer in enumerate(layers):
        if isinstance(layer, _BOUNDARY_LAYERS) and i > 0:
            return layers[i - 1].name
    end = len(layers)
    while end > 1 and isinstance(layers[end - 1], _TOP_LAYERS):
        end -= 1
    return layers[end - 1].name


def _input_shape(base: keras.Model, requested: Sequence[int] | None) -> tuple:
    expected = tuple(base.inputs[0].shape[1:])
    if requested is None:
        return expected
    requested = tuple(int(d) for d in requested)
    fits = len(expected) == len(requested) and all(
        e is None or e == r for e, r in zip(expected, requested, strict=True)
    )
    if not fits:
        raise TransferError(
            f"the base takes inputs of shape {expected}; build or load it at the shape you "
            "want (kzoo.load(name, input_shape=...) or kzoo.build(spec, input_shape=...)). "
            f"Received: input_shape={requested}"
        )
    return requested


def _resolve_head(head: str | keras.Model, feature_shape: tuple) -> keras.Model:
    if isinstance(head, keras.Model):
        return head
    if not isinstance(head, str):
        raise TransferError(f"head must be a DSL string or a keras.Model. Received: head={head!r}")
    from kzoo.builder import build
    from kzoo.errors import KzooError

    # The head is tiny next to the base, so it always runs in float32: softmax included.
    with _dtype_policy("float32"):
        try:
            return build(head, input_shape=feature_shape, prefix="head_", name="head")
        except KzooError:
            raise
        except Exception as error:
            raise TransferError(
                f"cannot build the head {head!r} on the base's output shape {feature_shape}: "
                f"{error}. Received: head={head!r}"
            ) from error


def _default_loss(head: keras.Model, loss: Any, metrics: Any) -> tuple[Any, Any]:
    activation = getattr(getattr(head.layers[-1], "activation", None), "__name__", "linear")
    units = head.output.shape[-1]
    defaults = {
        "softmax": ("sparse_categorical_crossentropy", ["accuracy"]),
        "sigmoid": ("binary_crossentropy", ["accuracy"]),
    }
    default_loss, default_metrics = defaults.get(activation, ("mean_squared_error", []))
    if activation == "softmax" and units == 1:
        raise TransferError("a softmax head over one unit always outputs 1; use FC1+sigmoid")
    return (loss or default_loss), (default_metrics if metrics is None else list(metrics))


def select_layers(base: keras.Model, unfreeze: str | int) -> list[str]:
    """The names of the base layers that ``fine_tune(unfreeze=...)`` trains.

    Args:
        base: The cut base model.
        unfreeze: ``"all"``, the number of top blocks, or the first layer to unfreeze.

    Returns:
        Layer names, in model order.

    Raises:
        TransferError: An unknown layer name or a block count out of range.
    """
    layers = [la for la in base.layers if not isinstance(la, keras.layers.InputLayer)]
    names = [la.name for la in layers]
    if unfreeze == "all":
        return names
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, (int, str)):
        raise TransferError(
            f"unfreeze must be 'all', a number of blocks or a layer name. Received: {unfreeze!r}"
        )
    if isinstance(unfreeze, str):
        if unfreeze not in names:
            raise TransferError(
                f"unfreeze={unfreeze!r} is not a layer of the base; valid names: "
                f"{', '.join(names)}. Received: unfreeze={unfreeze!r}"
            )
        return names[names.index(unfreeze) :]
    blocks = _blocks(layers)
    if not 1 <= unfreeze <= len(blocks):
        raise TransferError(
            f"unfreeze counts blocks from the top and the base has {len(blocks)} "
            f"({', '.join(blocks)}). Received: unfreeze={unfreeze}"
        )
    first = blocks[-unfreeze]
    start = next(i for i, la in enumerate(layers) if _block_of(la) == first)
    return names[start:]


def _block_of(layer: keras.layers.Layer) -> str | None:
    match = re.match(r"(block\d+)_", layer.name)
    if match:
        return match.group(1)
    return layer.name if layer.weights else None


def _blocks(layers: list[keras.layers.Layer]) -> list[str]:
    blocks: list[str] = []
    for layer in layers:
        block = _block_of(layer)
        if block is not None and block not in blocks:
            blocks.append(block)
    return blocks


# -- data -----------------------------------------------------------------------------------


def _random_layers(model: keras.layers.Layer) -> list[str]:
    """Names of layers that draw random numbers (they hold a keras.random.SeedGenerator)."""
    found = []
    for layer in _walk(model):
        if any(isinstance(v, keras.random.SeedGenerator) for v in vars(layer).values()):
            found.append(layer.name)
    return found


def _walk(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _walk(child)


def _is_tf_dataset(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec")


def _input_problem(x: Any) -> str | None:
    """Why ``x`` may differ between epochs, or None when every pass yields the same data."""
    if x is None or isinstance(x, (np.ndarray, list, dict)) or hasattr(x, "__array__"):
        return None
    if isinstance(x, tuple):
        return next((p for p in map(_input_problem, x) if p), None)
    if _is_tf_dataset(x):
        return _tf_dataset_problem(x)
    return (
        f"inputs of type {type(x).__name__} (a generator or PyDataset) cannot be proven to "
        "yield the same data every epoch"
    )


def _tf_dataset_problem(dataset: Any) -> str | None:
    import tensorflow as tf

    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        return "the dataset repeats forever"
    try:
        # tf.data has no public way to inspect a pipeline; its serialized graph lists every
        # op, those of map() functions included (in the function library).
        graph = tf.compat.v1.GraphDef()
        graph.ParseFromString(dataset._as_serialized_graph().numpy())
    except Exception:
        return "the dataset's pipeline cannot be inspected"
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    random_ops = sorted(op for op in ops if _RANDOM_TF_OPS.search(op))
    if random_ops:
        return f"the dataset applies random or opaque ops ({', '.join(random_ops)})"
    return None


def _unpack_validation(validation_data: Any) -> tuple[Any, Any]:
    if isinstance(validation_data, tuple):
        return validation_data[0], validation_data[1:]
    return validation_data, None


def _extract(base: keras.Model, x: Any, y: Any, batch_size: int):
    """Runs the base once: ``(features, (targets, sample_weights), dataset batch size)``."""
    if _is_tf_dataset(x):
        # One pass that keeps features and targets together: a dataset that reshuffles on
        # every iteration would pair them wrongly if it were iterated twice.
        features, targets, weights = [], [], []
        batch_size = None
        for batch in x.as_numpy_iterator():  # numpy: every backend's predict takes it
            batch_size = batch_size or len(batch[0] if isinstance(batch, tuple) else batch)
            batch = batch if isinstance(batch, tuple) else (batch,)
            features.append(_float32(base.predict_on_batch(batch[0])))
            targets.append(np.asarray(batch[1]) if len(batch) > 1 else None)
            weights.append(np.asarray(batch[2]) if len(batch) > 2 else None)
        targets_all = None if targets[0] is None else np.concatenate(targets)
        weights_all = None if weights[0] is None else np.concatenate(weights)
        return np.concatenate(features), (targets_all, weights_all), batch_size
    features = _float32(base.predict(x, batch_size=batch_size, verbose=0))
    if isinstance(y, tuple):  # (targets, sample weights) from validation_data
        return features, (y[0], y[1] if len(y) > 1 else None), None
    return features, (y, None), None


def _float32(features: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(features), dtype=np.float32)


# -- optimizers, callbacks, precision --------------------------------------------------------


def _fresh_optimizer(template: Any, lr: float) -> keras.optimizers.Optimizer:
    if isinstance(template, keras.optimizers.Optimizer):
        config = {**template.get_config(), "learning_rate": lr}
        return type(template).from_config(config)
    if isinstance(template, str):
        return keras.optimizers.get({"class_name": template, "config": {"learning_rate": lr}})
    raise TransferError(
        f"optimizer must be a name or a keras optimizer. Received: optimizer={template!r}"
    )


def _scale_learning_rates(optimizer: keras.optimizers.Optimizer, multipliers: dict) -> None:
    """Gives some variables a learning rate ``multiplier`` times the optimizer's.

    Keras 3 has no per-variable learning rates. On TensorFlow and JAX every variable's update
    goes through ``update_step(gradient, variable, learning_rate)``, and the updates of SGD,
    Adam, AdamW, RMSprop, ... are linear in that rate, so scaling it per variable is exact.
    The method is replaced on this instance rather than in a subclass so that the optimizer
    stays a public Keras class: a saved model reloads with plain ``keras.saving.load_model``
    (the multipliers are a training-time setting and are not saved).
    """
    if keras.backend.backend() not in ("tensorflow", "jax"):
        logger.warning(
            "per-layer learning rates need the TensorFlow or JAX backend; on %s every layer "
            "trains at %s",
            keras.backend.backend(),
            optimizer.get_config()["learning_rate"],
        )
        return
    plain_update = optimizer.update_step
    by_id = dict(multipliers)
    keyed: dict[Any, float] = {}

    def update_step(self, gradient, variable, learning_rate):
        if not keyed:  # variable keys are backend-specific: ask the optimizer itself
            for v in self._trainable_variables:
                keyed[self._var_key(v)] = by_id.get(id(v), 1.0)
        scale = keyed.get(self._var_key(variable), 1.0)
        if scale != 1.0:
            learning_rate = learning_rate * scale
        return plain_update(gradient, variable, learning_rate)

    optimizer.update_step = types.MethodType(update_step, optimizer)
    optimizer.kzoo_lr_multipliers = by_id


class _OnFullModel(keras.callbacks.Callback):
    """Runs a user callback against the full model while only the head trains.

    On cached features Keras fits the head sub-model, but checkpoints, early stopping with
    weight restoring and diagnostics must see the model the user will save.
    """

    def __init__(self, callback: keras.callbacks.Callback, full_model: keras.Model) -> None:
        super().__init__()
        self.callback = callback
        self.full_model = full_model
        callback.set_model(full_model)

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.callback.set_model(self.full_model)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.callback.set_params(params)

    def _forward(self, hook: str, *args: Any) -> None:
        _ = self.model  # on JAX this copies the trained head state back into its variables
        getattr(self.callback, hook)(*args)
        if self.full_model.stop_training:
            self.model.stop_training = True


def _forwarding(hook: str) -> Callable:
    def method(self, *args: Any, **kwargs: Any) -> None:
        self._forward(hook, *args, *kwargs.values())

    method.__name__ = hook
    return method


for _hook in (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end",
):  # fmt: skip
    setattr(_OnFullModel, _hook, _forwarding(_hook))


def _with_diagnostics(callbacks: Any, diagnostics: bool) -> list:
    callbacks = list(callbacks or [])
    if not diagnostics:
        return callbacks
    try:
        from kzoo.diagnostics import TrainingDiagnostics
    except ImportError:  # diagnostics are optional; training works without them
        return callbacks
    if not any(isinstance(c, TrainingDiagnostics) for c in callbacks):
        callbacks.append(TrainingDiagnostics())
    return callbacks


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _gpu_jax() -> bool:
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


def _gpu_tensorflow() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _gpu_torch() -> bool:
    import torch

    return torch.cuda.is_available()


_GPU_PROBES = {"jax": _gpu_jax, "tensorflow": _gpu_tensorflow, "torch": _gpu_torch}


def _has_gpu() -> bool:
    probe = _GPU_PROBES.get(keras.backend.backend())
    return bool(probe and probe())


def _current_tf_strategy() -> Any:
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if not any(value is c or (isinstance(c, str) and value == c) for c in choices):
        raise TransferError(
            f"{name} must be one of {', '.join(map(repr, choices))}. Received: {name}={value!r}"
        )
