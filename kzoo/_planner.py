"""The placement rules behind :func:`kzoo.shapes.plan`: one spec layer -> named Keras steps.

:class:`_Planner` names every layer (the keras.applications scheme), adds the implicit
Flatten, picks the head and its activation, places BatchNormalization, activations and dropout,
and runs each token's shape rule, turning a failure into a :class:`kzoo.errors.SpecError` that
points at the layer's columns. Pure Python: no Keras.
"""

from __future__ import annotations

from typing import Any

from kzoo import tokens as _tokens
from kzoo.dsl import Layer, Spec, unparse_layer
from kzoo.errors import SpecError
from kzoo.shapes import Plan, Shape, Step
from kzoo.tokens import TokenProblem


def _modifier_role(keyword: str) -> str:
    token = _tokens.get_token(keyword)
    return token.role if token is not None else "custom"


class _Planner:
    def __init__(self, spec: Spec, shape: Shape, opts: dict[str, Any], arch: str | None) -> None:
        self.spec, self.opts = spec, opts
        self.padding = "valid" if opts["dialect"] == "ciresan" else opts["padding"]
        self.prefix = opts["prefix"] or ""
        self.out = Plan(spec.text, shape, self.prefix + "input_layer", name=arch)
        self.shape = shape
        self.names: set[str] = {self.out.input_name}
        self.block, self.conv_i, self.fc_i = 1, 0, 0
        self.last = "input"
        self.custom: dict[str, int] = {}

    def fail(self, reason: str, span: tuple[int, int] | None, help: str | None = None):
        raise SpecError(reason, self.spec.text, span or (0, len(self.spec.text)), help)

    def add(self, name: str, keyword: str, params: dict[str, Any], label: str, span) -> str:
        unique, k = self.prefix + name, 0
        while unique in self.names:
            k += 1
            unique = f"{self.prefix}{name}_{k}"
        self.names.add(unique)
        token = _tokens.get_token(keyword)
        params = {**params, "name": unique}
        try:
            out_shape, n = token.shape(self.shape, params)
        except TokenProblem as problem:
            where = f" at column {span[0] + 1}" if span else ""
            self.fail(f"{label}{where} {problem.reason}", span, problem.help)
        except (ValueError, TypeError, ArithmeticError) as problem:  # a user shape rule failed
            self.fail(f"{label}: {problem}", span, f"check the shape rule of {keyword!r}")
        self.shape = tuple(out_shape)
        self.out.steps.append(Step(unique, token, params, label, span, self.shape, int(n)))
        return name

    def run(self) -> Plan:
        layers = self.spec.layers()
        roles = [_tokens.get_token(layer.keyword).role for layer in layers]
        dense = [i for i, role in enumerate(roles) if role == "dense"]
        head = dense[-1] if dense else None
        for i, layer in enumerate(layers):
            if layer.keyword == "output" and i != head:
                self.fail(
                    "'output' must be the last dense layer",
                    layer.span,
                    "write 'FC' for hidden dense layers",
                )
            if dict(layer.kwargs).get("head") and i != head:
                self.fail(
                    "'head=' only applies to the last dense layer",
                    layer.span,
                    "move it to the last FC",
                )
        spatial = len(self.shape) > 1
        for i, (layer, role) in enumerate(zip(layers, roles, strict=True)):
            if not self.opts["include_top"] and (
                (spatial and role in ("flatten", "global_pool", "dense"))
                or (not spatial and i == head)
            ):
                break
            self.layer(layer, role, i == head)
        if not self.opts["include_top"] and self.opts["pooling"] and len(self.shape) == 3:
            gap = self.opts["pooling"] == "avg"
            self.add(
                "avg_pool" if gap else "max_pool",
                "GAP" if gap else "GMP",
                {},
                f"(pooling={self.opts['pooling']!r})",
                None,
            )
        return self.out

    def layer(self, layer: Layer, role: str, is_head: bool) -> None:
        label, span = unparse_layer(layer), layer.span
        mods = {_modifier_role(m.keyword): m for m in layer.modifiers}
        kwargs = dict(layer.kwargs)
        act_mod = mods.get("activation")
        bn = "batchnorm" in mods
        rate = mods["dropout"].args[0] if "dropout" in mods else None
        if role in ("conv", "dense") and not is_head:
            bn = bn or bool(self.opts["bn"])
            if role == "dense":  # dropout after hidden FCs only, as in VGG
                rate = rate if rate is not None else self.opts["dropout"]
        act = act_mod.keyword if act_mod else None
        if role == "conv":
            act = act or self.opts["activation"]
            self.conv_i += 1
            name = f"block{self.block}_conv{self.conv_i}"
            flags = dict(layer.flags)
            kernel = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
            params = dict(
                filters=layer.count,
                kernel_size=kernel,
                strides=(flags.get("s", 1),) * 2,
                dilation_rate=(flags.get("d", 1),) * 2,
                padding="valid" if flags.get("v") else self.padding,
                use_bias=not bn,
                activation="linear" if bn else act,
                kernel_initializer=kwargs.get("init"),
            )
            self.last = self.add(name, "C", params, label, span)
        elif role == "dense":
            if len(self.shape) > 1:
                self.add("flatten", "F", {}, "(flatten)", span)
            if is_head:
                act = act or kwargs.get("head") or self.opts["head"] or "softmax"
                if act == "softmax" and layer.args[0] == 1:
                    self.fail(
                        f"softmax over one unit always outputs 1 ({label} is the head)",
                        span,
                        "use 'FC1+sigmoid' for a binary classifier or 'FC1+linear' for regression",
                    )
                name = "predictions"
            else:
                act = act or self.opts["activation"]
                self.fc_i += 1
                name = f"fc{self.fc_i}"
            params = dict(
                units=layer.args[0],
                use_bias=not bn,
                activation="linear" if bn else act,
                kernel_initializer=kwargs.get("init"),
            )
            self.last = self.add(name, "FC", params, label, span)
        elif role == "pool":
            size = (layer.args[0], layer.args[1] if len(layer.args) > 1 else layer.args[0])
            stride = dict(layer.flags).get("s")
            params = dict(pool_size=size, strides=(stride, stride) if stride else size)
            self.last = self.add(f"block{self.block}_pool", layer.keyword, params, label, span)
            self.block, self.conv_i = self.block + 1, 0
        elif role == "global_pool":
            name = "avg_pool" if layer.keyword == "GAP" else "max_pool"
            self.last = self.add(name, layer.keyword, {}, label, span)
        elif role == "flatten":
            self.last = self.add("flatten", "F", {}, label, span)
        elif role == "batchnorm":
            self.add(f"{self.last}_bn", "BN", {}, label, span)
        elif role == "dropout":
            self.add(f"{self.last}_dropout", "D", {"rate": layer.args[0]}, label, span)
        elif role == "activation":
            self.add(
                f"{self.last}_{layer.keyword}",
                layer.keyword,
                {"activation": layer.keyword},
                label,
                span,
            )
        else:
            token = _tokens.get_token(layer.keyword)
            n = self.custom[layer.keyword] = self.custom.get(layer.keyword, 0) + 1
            params = token.params(layer.count, layer.args, dict(layer.flags), kwargs)
            self.last = self.add(f"{layer.keyword.lower()}{n}", layer.keyword, params, label, span)
        base = self.last
        if role not in ("batchnorm", "dropout", "activation"):
            if bn:
                self.add(f"{base}_bn", "BN", {}, "+BN", span)
            if act not in (None, "linear") and (bn or role not in ("conv", "dense")):
                self.add(f"{base}_{act}", act, {"activation": act}, f"+{act}", span)
            if rate:
                self.add(f"{base}_dropout", "D", {"rate": rate}, f"+D{rate}", span)
            for mod in layer.modifiers:  # user modifiers follow, named like user layers
                if _modifier_role(mod.keyword) == "custom":
                    token = _tokens.get_token(mod.keyword)
                    n = self.custom[mod.keyword] = self.custom.get(mod.keyword, 0) + 1
                    params = token.params(None, mod.args, {}, {})
                    label = f"+{mod.keyword}" + ",".join(map(str, mod.args))
                    self.add(f"{mod.keyword.lower()}{n}", mod.keyword, params, label, span)
