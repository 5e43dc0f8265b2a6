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

ShuffleNet V1 (``branch_main_1``/``branch_main_2``) is *not* mapped: megvii's channel shuffle is the inverse of
the paper's (and litezoo's) permutation, and inside a grouped 1x1 conv no weight permutation turns one into the
other, so its weights do not fit litezoo's V1 exactly.
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

    def __init__(self, src: dict[str, torch.Tensor], own: dict[str, torch.Tensor]):
        self.src, self.own, self.out = src, own, {}

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
            raise InputError(f"megvii ShuffleNet V2 weights: {key} is missing (another width or a truncated file?)")
        return self.src[key]


def shufflenet_v2_to_litezoo(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A megvii ShuffleNet V2 state dict (prefix already stripped) as a litezoo ``shufflenet_v2_*`` state dict."""
    if signature(set(src)) == "shufflenet_v1":
        raise InputError(
            "megvii's ShuffleNet V1 weights cannot be loaded: its channel shuffle is the inverse of litezoo's, "
            "and no weight permutation of a grouped 1x1 conv makes up for it"
        )
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
