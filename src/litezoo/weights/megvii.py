"""The official ShuffleNet PyTorch releases' layout (megvii-model/ShuffleNet-Series), into litezoo's models.

ShuffleNet V2 (``ShuffleNetV2/network.py``, ``blocks.py`` there): module names ``first_conv``, ``features.<i>``
(all units in one Sequential) with ``branch_main`` = [1x1, BN, ReLU, dw 3x3, BN, 1x1, BN, ReLU] and, in
stride-2 units, ``branch_proj`` = [dw 3x3, BN, 1x1, BN, ReLU], then ``conv_last`` and a bias-free
``classifier.0``. The released files were saved from ``DataParallel`` (``module.`` prefix, ``state_dict`` key).

The network is the same as litezoo's (and torchvision's) but its channels sit in another order: megvii's unit
concatenates [passed-through, branch] *without* shuffling and the next unit splits even/odd channels, where
litezoo splits first/second half and shuffles (interleaves) after the concat. Only 1x1, depthwise and BN layers
touch channels, so the two are the same function up to a channel permutation at every unit boundary. This module
follows every channel by name through both networks and re-orders the weights accordingly:

* channels passed through stay where the previous unit put them (nothing to choose);
* a branch's own outputs (rows of its last 1x1 conv + BN) are ordered so that the ones megvii passes through
  the most units come first -- litezoo's first-half split then passes exactly the same channels;
* every layer reading a boundary (a branch's first 1x1 or depthwise conv, ``conv_last``) gets its input columns
  in litezoo's order.

Every split is checked on the way, so a mapping that does not hold fails loudly instead of loading garbage.

ShuffleNet V1 (``ShuffleNetV1/network.py``, ``blocks.py``): ``first_conv``, ``features.<i>`` with
``branch_main_1`` = [1x1 GConv, BN, ReLU, dw 3x3, BN] and ``branch_main_2`` = [1x1 GConv, BN] (stride-2 units:
a 3x3 average pool, no weights), bias-free ``classifier.0``; released for g=3 and g=8 at 0.5x-2.0x. Names and
shapes map one to one onto litezoo's units (``pw1``, ``dw``, ``pw2``), but megvii's channel shuffle is the
*inverse* of the paper's (it views the channels as (C/g, g), not (g, C/g), before transposing). Inside the
grouped 1x1 conv that follows, no weight permutation turns one into the other, so the weights fit only a model
built with the same shuffle: ``create_model(name, shuffle_order="megvii")``; a paper-order model gets an error
saying so. Two more differences, made up for by re-ordering weights: megvii shuffles *after* the depthwise conv
(at the end of ``branch_main_1``), the paper before it -- the depthwise conv and its BN act per channel, so the
loader stores their channels in megvii's shuffled order; and megvii's blocks shuffle whenever g > 1, also in
stage 2's first unit, whose first 1x1 conv is dense (``first_group``), where litezoo does not shuffle (after a
dense conv a shuffle only relabels the outputs), so that conv's output rows and BN are stored shuffled as well.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from litezoo.errors import InputError

_BN = ("weight", "bias", "running_mean", "running_var")


def signature(keys: set[str]) -> str | None:
    if "first_conv.0.weight" in keys and any(".branch_main_1." in k for k in keys):
        return "shufflenet_v1"
    if "first_conv.0.weight" in keys and any(".branch_main." in k for k in keys):
        return "shufflenet_v2"
    return None


def _interleave(a: list, b: list) -> list:
    """litezoo's channel_shuffle(cat(a, b), 2): a[0], b[0], a[1], b[1], ..."""
    return [x for pair in zip(a, b) for x in pair]


class _Copier:
    """Copies megvii tensors into a litezoo state dict with optional row / column index lists."""

    def __init__(self, src: dict[str, torch.Tensor], own: dict[str, torch.Tensor], release: str = "ShuffleNet V2"):
        self.src, self.own, self.out, self.release = src, own, {}, release

    def conv(self, theirs: str, ours: str, rows: list[int] | None = None, cols: list[int] | None = None) -> None:
        w = self._get(f"{theirs}.weight")  # (out, in/groups, k, k)
        if rows is not None:
            w = w[rows]
        if cols is not None:
            w = w[:, cols]
        self.out[f"{ours}.weight"] = w

    def bn(self, theirs: str, ours: str, rows: list[int] | None = None) -> None:
        for leaf in _BN:
            t = self._get(f"{theirs}.{leaf}")
            self.out[f"{ours}.{leaf}"] = t if rows is None else t[rows]
        if f"{theirs}.num_batches_tracked" in self.src:
            self.out[f"{ours}.num_batches_tracked"] = self.src[f"{theirs}.num_batches_tracked"]

    def _get(self, key: str) -> torch.Tensor:
        if key not in self.src:
            raise InputError(f"megvii {self.release} weights: {key} is missing (another width or a truncated file?)")
        return self.src[key]


def shufflenet_v2_to_litezoo(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A megvii ShuffleNet V2 state dict (prefix already stripped) as a litezoo ``shufflenet_v2_*`` state dict."""
    if signature(set(src)) == "shufflenet_v1":
        raise InputError(_v1_order_message(src, model))
    c = _Copier(src, model.state_dict())
    c.conv("first_conv.0", "stem.0")
    c.bn("first_conv.1", "stem.1")
    stem_chs = src["first_conv.0.weight"].shape[0]
    lz = [("stem", j) for j in range(stem_chs)]  # channel names at the boundary, in litezoo's order
    mg = list(lz)  # ... and in megvii's
    g = 0  # megvii's unit index (one flat Sequential)
    for s, stage in enumerate(model.stages):
        # 1. megvii's channel order after each unit of the stage, and how many later units pass each channel on.
        orders, depth, m = [], {}, mg
        for u, unit in enumerate(stage):
            half = src[f"features.{g + u}.branch_main.5.weight"].shape[0]
            if u == 0:
                m = [("proj", g, j) for j in range(half)] + [("main", g, j) for j in range(half)]
            else:
                for ch in m[0::2]:  # megvii passes the even channels through unit u
                    depth[ch] = depth.get(ch, 0) + 1
                m = m[0::2] + [("main", g + u, j) for j in range(half)]
            orders.append(m)

        def by_depth(names: list) -> list:
            return sorted(names, key=lambda ch: -depth.get(ch, 0))  # stable: ties keep megvii's order

        # 2. litezoo's order, unit by unit, and the weights re-indexed to it.
        for u, unit in enumerate(stage):
            theirs, ours = f"features.{g + u}", f"stages.{s}.{u}"
            pos_in = {ch: i for i, ch in enumerate(mg)}
            if u == 0:
                cols = [pos_in[ch] for ch in lz]  # both branches read the whole input
                proj = by_depth([ch for ch in orders[0] if ch[0] == "proj"])
                prow = [ch[2] for ch in proj]
                c.conv(f"{theirs}.branch_proj.0", f"{ours}.branch_proj.0.0", rows=cols)  # depthwise: rows = channels
                c.bn(f"{theirs}.branch_proj.1", f"{ours}.branch_proj.0.1", rows=cols)
                c.conv(f"{theirs}.branch_proj.2", f"{ours}.branch_proj.1.0", rows=prow, cols=cols)
                c.bn(f"{theirs}.branch_proj.3", f"{ours}.branch_proj.1.1", rows=prow)
                passed = proj
            else:
                half = len(lz) // 2
                if set(lz[:half]) != set(mg[0::2]):
                    raise RuntimeError(f"megvii ShuffleNet V2 mapping: the split of {theirs} does not line up")
                pos_odd = {ch: i for i, ch in enumerate(mg[1::2])}
                cols = [pos_odd[ch] for ch in lz[half:]]
                passed = lz[:half]
            main = by_depth([ch for ch in orders[u] if ch[0] == "main" and ch[1] == g + u])
            mrow = [ch[2] for ch in main]
            c.conv(f"{theirs}.branch_main.0", f"{ours}.branch_main.0.0", cols=cols)
            c.bn(f"{theirs}.branch_main.1", f"{ours}.branch_main.0.1")
            c.conv(f"{theirs}.branch_main.3", f"{ours}.branch_main.1.0")
            c.bn(f"{theirs}.branch_main.4", f"{ours}.branch_main.1.1")
            c.conv(f"{theirs}.branch_main.5", f"{ours}.branch_main.2.0", rows=mrow)
            c.bn(f"{theirs}.branch_main.6", f"{ours}.branch_main.2.1", rows=mrow)
            lz, mg = _interleave(passed, main), orders[u]
        g += len(stage)
    pos = {ch: i for i, ch in enumerate(mg)}
    c.conv("conv_last.0", "conv5.0", cols=[pos[ch] for ch in lz])
    c.bn("conv_last.1", "conv5.1")
    fc = c._get("classifier.0.weight")  # (classes, C); megvii's classifier has no bias
    c.out["head.fc.weight"] = fc
    c.out["head.fc.bias"] = torch.zeros(fc.shape[0], dtype=fc.dtype)
    return c.out


# ---------------------------------------------------------------------------------------------------------------
# ShuffleNet V1


def megvii_shuffle_order(channels: int, groups: int) -> list[int]:
    """Output channel ``o`` of megvii's V1 channel shuffle is input channel ``order[o]``.

    megvii views (N, C, H, W) as (N, C/g, g, H, W) and swaps the two channel axes: output (i, j) of the
    (g, C/g) result is input j * g + i. (The paper's shuffle is the inverse: output j * g + i is input i * C/g + j.)
    """
    n = channels // groups
    return [(o % n) * groups + o // n for o in range(channels)]


def v1_model_name(src: dict[str, torch.Tensor]) -> str | None:
    """The litezoo variant whose shapes a megvii V1 state dict has (e.g. ``shufflenet_v1_g3_x1_0``), or None."""
    from litezoo.models.shufflenet_v1 import _STAGE_CHANNELS
    from litezoo.registry import list_models

    try:
        out = src["features.1.branch_main_2.0.weight"].shape[0]  # stage 2's stride-1 unit: (out, mid/g, 1, 1)
        groups = out // src["features.1.branch_main_1.0.weight"].shape[1]  # (mid, out/g, 1, 1)
    except (KeyError, IndexError, ZeroDivisionError):
        return None
    if groups not in _STAGE_CHANNELS:
        return None
    for width, tag in ((0.5, "0_5"), (1.0, "1_0"), (1.5, "1_5"), (2.0, "2_0")):
        name = f"shufflenet_v1_g{groups}_x{tag}"
        if int(_STAGE_CHANNELS[groups][0] * width) == out and name in list_models(name):
            return name
    return None


def _v1_order_message(src: dict[str, torch.Tensor], model: nn.Module) -> str:
    name = v1_model_name(src) or getattr(model, "model_name", "shufflenet_v1_g3_x1_0")
    return (
        f"megvii's ShuffleNet V1 weights need megvii's channel-shuffle order, the inverse of litezoo's default "
        f"(the paper's), and no weight permutation of a grouped 1x1 conv makes up for it: build the model with "
        f"litezoo.create_model({name!r}, shuffle_order='megvii')"
    )


def shufflenet_v1_to_litezoo(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A megvii ShuffleNet V1 state dict (prefix already stripped) as a litezoo ``shufflenet_v1_*`` state dict.

    ``model`` must use megvii's shuffle (``shuffle_order="megvii"``); otherwise an ``InputError`` says how to
    build one. Shapes are checked by the caller (``load_weights``), layer by layer.
    """
    if getattr(model, "shuffle_order", None) != "megvii":
        raise InputError(_v1_order_message(src, model))
    c = _Copier(src, model.state_dict(), release="ShuffleNet V1")
    c.conv("first_conv.0", "stem.0")
    c.bn("first_conv.1", "stem.1")
    i = 0  # megvii's unit index (one flat Sequential)
    for s, stage in enumerate(model.stages):
        for u, unit in enumerate(stage):
            theirs, ours = f"features.{i}", f"stages.{s}.{u}"
            # megvii: pw1 -> dw -> shuffle; litezoo: pw1 -> shuffle -> dw (or no shuffle after a dense pw1). The
            # depthwise conv is per channel, so shuffle(dw(y)) = dw'(shuffle(y)) with dw's channels in shuffled
            # order; a dense pw1 without litezoo's shuffle takes its output rows in shuffled order too.
            shuffled = pw1_rows = None
            mid = c._get(f"{theirs}.branch_main_1.0.weight").shape[0]
            if model.groups > 1 and mid % model.groups == 0:  # else another width: load_weights names the misfits
                shuffled = megvii_shuffle_order(mid, model.groups)
                pw1_rows = shuffled if unit.shuffle_groups == 1 else None
            c.conv(f"{theirs}.branch_main_1.0", f"{ours}.pw1.0", rows=pw1_rows)  # 1x1 (G)Conv: (mid, in/g, 1, 1)
            c.bn(f"{theirs}.branch_main_1.1", f"{ours}.pw1.1", rows=pw1_rows)
            c.conv(f"{theirs}.branch_main_1.3", f"{ours}.dw.0", rows=shuffled)  # depthwise 3x3: (mid, 1, 3, 3)
            c.bn(f"{theirs}.branch_main_1.4", f"{ours}.dw.1", rows=shuffled)
            c.conv(f"{theirs}.branch_main_2.0", f"{ours}.pw2.0")  # 1x1 GConv: (out or out - in, mid/g, 1, 1)
            c.bn(f"{theirs}.branch_main_2.1", f"{ours}.pw2.1")
            i += 1
    if any(k.startswith(f"features.{i}.") for k in src):
        raise InputError(
            f"megvii ShuffleNet V1 weights have more than the {i} units of {getattr(model, 'model_name', 'the model')}"
        )
    fc = c._get("classifier.0.weight")  # (classes, C); megvii's classifier has no bias
    c.out["head.fc.weight"] = fc
    c.out["head.fc.bias"] = torch.zeros(fc.shape[0], dtype=fc.dtype)
    return c.out
