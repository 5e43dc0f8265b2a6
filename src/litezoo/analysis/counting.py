"""Count what a forward pass costs, from the operators that actually run.

How it works: a ``TorchDispatchMode`` sees every ATen operator a forward pass executes, after PyTorch has
lowered ``nn.Conv2d``, ``F.linear``, ``x @ w``, ``einsum`` and ``scaled_dot_product_attention`` to kernels.
So the counts hold for any model — zoo models, user models, functional code inside ``forward`` — without a
per-layer-type table that silently misses what it does not know. Module hooks keep a stack of module names
so every operator is charged to the innermost module whose ``forward`` called it.

Conventions (every number says which one it is):

``macs`` — *paper convention*: multiply-accumulates of convolutions and matrix products only. This is what
    the MobileNet / ShuffleNet / EfficientNet papers call "FLOPs" or "mult-adds". It covers ``aten.convolution``
    (any groups, stride, dilation; transposed too), ``mm``/``addmm``/``bmm``/``baddbmm``/``mv``/``dot``
    (linear layers and any matmul or einsum in user code) and the two matrix products inside fused attention
    (``QKᵀ``: B·H·L·S·E and ``softmax(·)V``: B·H·L·S·Ev; ``nn.MultiheadAttention``'s fused inference op is
    split into its projections and these two products). Bias additions, BatchNorm, activations, pooling,
    softmax and residual adds are not MACs.
``flops_all`` — *all-operator convention*: ``2 × macs`` (one multiply + one add), plus 1 FLOP per output
    element for a bias folded into a conv or ``addmm`` (so a bias costs the same whether or not PyTorch fuses
    it), plus the arithmetic of every other operator that has a rule below: 1 FLOP per output element for
    pointwise ops (activations, adds, multiplies), 2 per element for inference BatchNorm (a folded scale and
    shift), 5 per element for LayerNorm/GroupNorm and softmax, 1 per input element for reductions and global
    pooling, kernel area per output element for windowed pooling. Roughly what thop/ptflops report, ×2.
``mac_bytes`` — ShuffleNet V2's *memory access cost*, in bytes: every tensor an operator reads (inputs,
    weights) plus every tensor it writes, at its dtype's size. Views move no data and cost 0.
``act_bytes`` — *activation memory*: bytes of the new tensors operators allocate (outputs that are not views
    of, or written in place into, an input).

Operators that ran but have no rule in any of these conventions are listed in ``uncounted_ops`` — never
dropped silently.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from litezoo.errors import InputError

# ----------------------------------------------------------------------------------------------------------
# Operator rules. Keys are the op's base name (``aten.relu_.default`` -> ``relu_``); in-place variants are
# matched by stripping the trailing underscore.

# Convolutions: weight (C_out, C_in/g, *k) for normal convs, (C_in, C_out/g, *k) for transposed.
_CONV_OPS = {"convolution", "_convolution", "convolution_overrideable", "mkldnn_convolution", "cudnn_convolution"}
_MATMUL_OPS = {"mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "mv", "addmv", "dot", "linear"}
_MATMUL_WITH_BIAS = {"addmm", "_addmm_activation", "baddbmm", "addmv"}  # "self" is added to the product
_ATTENTION_OPS = {
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
}

# FLOPs per element for ops the all-operator convention counts (besides convs and matmuls).
_PER_OUTPUT_ELEMENT = {
    "native_batch_norm": 2,  # in eval the statistics are fixed: y = x * scale + shift
    "_native_batch_norm_legit_no_training": 2,
    "_native_batch_norm_legit": 4,  # training: also computes mean and variance
    "native_layer_norm": 5,  # mean, variance, subtract, divide, affine
    "native_group_norm": 5,
    "_softmax": 5,  # max, subtract, exp, sum, divide
    "_log_softmax": 5,
}
# Activations that ATen does not tag as pointwise but are (1 FLOP per output element by convention).
_ACTIVATIONS = {"hardswish", "hardsigmoid", "hardtanh", "silu", "mish", "leaky_relu", "elu", "relu6", "gelu",
                "relu", "sigmoid", "tanh", "threshold", "prelu", "_prelu_kernel", "softplus", "clamp", "clamp_min"}
_POOL_WINDOW = {"max_pool2d_with_indices", "max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d",
                "max_pool3d_with_indices", "avg_pool3d"}
_POOL_GLOBAL = {"_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_avg_pool3d",
                "adaptive_avg_pool1d"}
# Data movement: no arithmetic (0 FLOPs) but they read and write memory, so they count in mac_bytes.
_DATA_MOVEMENT = {"clone", "_to_copy", "copy", "cat", "stack", "constant_pad_nd", "index_select", "gather",
                  "embedding", "repeat", "flip", "roll", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
                  "native_channel_shuffle", "contiguous", "fill", "zero", "zeros", "ones", "full", "arange",
                  "zeros_like", "ones_like", "full_like", "scalar_tensor", "index", "slice_scatter", "select_scatter",
                  "masked_fill", "where", "reflection_pad2d", "replication_pad2d", "upsample_nearest2d"}
# Allocation without writing anything.
_ALLOCATION = {"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"}
# No data moved at all (besides views, which ``OpOverload.is_view`` finds).
_NO_DATA = {"_unsafe_view", "lift_fresh", "detach", "alias", "_local_scalar_dense", "sym_size", "sym_stride",
            "sym_numel", "is_same_size", "_reshape_alias", "resize_", "set_"}

CATEGORY_MACS = "macs"  # conv / matmul / attention: counted in macs and flops_all
CATEGORY_ELEMENTWISE = "elementwise"  # counted in flops_all only
CATEGORY_MEMORY = "memory"  # data movement: 0 FLOPs, counted in mac_bytes
CATEGORY_VIEW = "view"  # no arithmetic, no data
CATEGORY_UNCOUNTED = "uncounted"  # ran, but no rule: its arithmetic is in no number


def _base_name(func) -> str:
    return func._schema.name.split("::", 1)[-1]


def _qualified_name(func) -> str:
    # "aten.cumsum", "mylib.weird_op": stable across overloads, readable in a report.
    namespace, _, name = func._schema.name.partition("::")
    return f"{namespace}.{name}" if name else namespace


def _tensors(tree: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    seen: dict[int, torch.Tensor] = {}
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            seen.setdefault(id(leaf), leaf)
    return list(seen.values())


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _conv_macs(args: tuple, out: torch.Tensor) -> int:
    x, weight = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    kernel_and_group_chans = math.prod(weight.shape[1:])  # (C_in/g) * kh * kw, or (C_out/g) * kh * kw
    if transposed:
        # Every input element is scattered through (C_out/g) * kh * kw weights.
        return x.numel() * kernel_and_group_chans
    # Every output element is a dot product of length (C_in/g) * kh * kw.
    return out.numel() * kernel_and_group_chans


def _matmul_macs(name: str, args: tuple) -> int:
    if name in ("mm",):
        a, b = args[0], args[1]
        return a.shape[0] * a.shape[1] * b.shape[1]
    if name in ("addmm", "_addmm_activation"):
        a, b = args[1], args[2]
        return a.shape[0] * a.shape[1] * b.shape[1]
    if name == "bmm":
        a, b = args[0], args[1]
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    if name == "baddbmm":
        a, b = args[1], args[2]
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    if name == "mv":
        return args[0].numel()
    if name == "addmv":
        return args[1].numel()
    if name == "dot":
        return args[0].numel()
    if name == "linear":  # (*, in) x (out, in)^T
        x, w = args[0], args[1]
        return (x.numel() // x.shape[-1]) * w.shape[0] * w.shape[1]
    raise AssertionError(name)


def _attention_macs(args: tuple) -> tuple[int, int]:
    """MACs of QKᵀ and softmax(·)V, and the number of attention scores (for softmax FLOPs)."""
    q, k, v = args[0], args[1], args[2]  # (B, H, L, E), (B, H, S, E), (B, H, S, Ev)
    batch_heads = math.prod(q.shape[:-2])
    length, embed = q.shape[-2], q.shape[-1]
    source, embed_v = k.shape[-2], v.shape[-1]
    scores = batch_heads * length * source
    return scores * embed + scores * embed_v, scores


def _native_mha_macs(args: tuple) -> tuple[int, int]:
    """``nn.MultiheadAttention``'s inference fast path: in-projection, attention, out-projection in one op."""
    query, key = args[0], args[1]  # (B, L, E), (B, S, E)
    embed, heads = args[3], args[4]
    batch, length, source = query.shape[0], query.shape[1], key.shape[1]
    projections = batch * length * embed * embed + 2 * batch * source * embed * embed  # q, k, v
    out_projection = batch * length * embed * embed
    scores = batch * heads * length * source
    attention = 2 * scores * (embed // heads)  # QKᵀ and softmax(·)V, head by head
    return projections + attention + out_projection, scores


@dataclass
class OpCost:
    """The cost of one operator call under every convention."""

    category: str
    macs: int = 0
    flops: int = 0  # all-operator convention (2 * macs + elementwise)
    read_bytes: int = 0
    write_bytes: int = 0
    alloc_bytes: int = 0


def op_cost(func, args: tuple, kwargs: dict, out: Any) -> OpCost:
    """Cost of one ATen operator call, given its arguments and result."""
    name = _base_name(func)
    stem = name[:-1] if name.endswith("_") and not name.startswith("_") else name
    inputs = _tensors((args, kwargs))
    outputs = _tensors(out)
    if func.is_view or name in _NO_DATA:
        return OpCost(CATEGORY_VIEW)

    read = sum(_nbytes(t) for t in inputs)
    write = sum(_nbytes(t) for t in outputs)
    input_storages = {t.untyped_storage().data_ptr() for t in inputs if t.untyped_storage().nbytes()}
    alloc = sum(_nbytes(t) for t in outputs if t.untyped_storage().data_ptr() not in input_storages)

    if name in _ALLOCATION:
        return OpCost(CATEGORY_MEMORY, alloc_bytes=alloc)

    macs = 0
    flops = 0
    category = CATEGORY_ELEMENTWISE
    if name in _CONV_OPS:
        macs, category = _conv_macs(args, outputs[0]), CATEGORY_MACS
        has_bias = len(args) > 2 and isinstance(args[2], torch.Tensor)
        flops = 2 * macs + (outputs[0].numel() if has_bias else 0)  # the bias add, as if it ran separately
    elif name in _MATMUL_OPS:
        macs, category = _matmul_macs(name, args), CATEGORY_MACS
        has_bias = name in _MATMUL_WITH_BIAS or (name == "linear" and len(args) > 2 and args[2] is not None)
        flops = 2 * macs + (outputs[0].numel() if has_bias else 0)
    elif name in _ATTENTION_OPS:
        macs, scores = _attention_macs(args)
        category = CATEGORY_MACS
        flops = 2 * macs + _PER_OUTPUT_ELEMENT["_softmax"] * scores
    elif name == "_native_multi_head_attention":
        macs, scores = _native_mha_macs(args)
        category = CATEGORY_MACS
        flops = 2 * macs + _PER_OUTPUT_ELEMENT["_softmax"] * scores
    elif name in _DATA_MOVEMENT or stem in _DATA_MOVEMENT:
        category = CATEGORY_MEMORY
    elif name in _PER_OUTPUT_ELEMENT:
        flops = _PER_OUTPUT_ELEMENT[name] * outputs[0].numel()
    elif name in _POOL_WINDOW:
        kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
        kernel = [kernel] if isinstance(kernel, int) else list(kernel)
        dims = len(kernel) if len(kernel) > 1 else outputs[0].ndim - 2
        area = math.prod(kernel) if len(kernel) > 1 else kernel[0] ** dims
        flops = outputs[0].numel() * area
    elif name in _POOL_GLOBAL or torch.Tag.reduction in func.tags:
        flops = inputs[0].numel()  # every input element is added (or compared) once
    elif torch.Tag.pointwise in func.tags or stem in _ACTIVATIONS:
        flops = outputs[0].numel() if outputs else 0
    else:
        category = CATEGORY_UNCOUNTED
    return OpCost(category, macs, flops, read, write, alloc)


# ----------------------------------------------------------------------------------------------------------
# Per-module accumulation.


@dataclass
class ModuleCost:
    """Everything charged to one module: the ops its own ``forward`` ran (not its children's)."""

    name: str
    type: str
    params: int  # parameters owned directly (recurse=False)
    calls: int = 0
    output_shape: list | None = None
    macs: int = 0
    flops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    alloc_bytes: int = 0
    has_children: bool = False
    ops: Counter = field(default_factory=Counter)  # qualified op name -> calls
    uncounted: Counter = field(default_factory=Counter)

    @property
    def mac_bytes(self) -> int:
        return self.read_bytes + self.write_bytes


def _shape_of(out: Any) -> list | None:
    tensors = _tensors(out)
    if not tensors:
        return None
    if len(tensors) == 1:
        return list(tensors[0].shape)
    return [list(t.shape) for t in tensors]


class _CostMode(TorchDispatchMode):
    def __init__(self, tracer: "CostTrace"):
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.tracer._record(func, args, kwargs, out)
        return out


class CostTrace:
    """Run one forward pass of ``model`` on ``x`` and charge every operator to its innermost module."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules: dict[str, ModuleCost] = {}
        self.order: list[str] = []  # module names in first-call order
        self._stack: list[str] = []
        for name, module in model.named_modules():
            self.modules[name] = ModuleCost(
                name,
                type(module).__name__,
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                has_children=any(True for _ in module.children()),
            )

    def _record(self, func, args, kwargs, out) -> None:
        cost = op_cost(func, args, kwargs, out)
        owner = self.modules[self._stack[-1]] if self._stack else self.modules[""]
        qualified = _qualified_name(func)
        owner.ops[qualified] += 1
        owner.macs += cost.macs
        owner.flops += cost.flops
        owner.read_bytes += cost.read_bytes
        owner.write_bytes += cost.write_bytes
        owner.alloc_bytes += cost.alloc_bytes
        if cost.category == CATEGORY_UNCOUNTED:
            owner.uncounted[qualified] += 1

    def run(self, x: torch.Tensor) -> Any:
        handles = []
        name_of = {id(m): n for n, m in self.model.named_modules()}

        def pre_hook(module, _inputs):
            name = name_of[id(module)]
            self._stack.append(name)
            if self.modules[name].calls == 0:
                self.order.append(name)
            self.modules[name].calls += 1

        def post_hook(module, _inputs, output):
            name = self._stack.pop()
            self.modules[name].output_shape = _shape_of(output)

        for module in self.model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook, always_call=True))
        was_training = self.model.training
        try:
            self.model.eval()  # batch-1 statistics would be meaningless (and BN on 1x1 maps would fail)
            with torch.no_grad(), _CostMode(self):
                return self.model(x)
        finally:
            self.model.train(was_training)
            for h in handles:
                h.remove()
            self._stack.clear()

    # --- totals ---------------------------------------------------------------------------------------
    def total(self, attr: str) -> int:
        return sum(getattr(m, attr) for m in self.modules.values())

    def uncounted_ops(self) -> dict[str, int]:
        total: Counter = Counter()
        for m in self.modules.values():
            total.update(m.uncounted)
        return dict(sorted(total.items()))

    def op_counts(self) -> dict[str, int]:
        total: Counter = Counter()
        for m in self.modules.values():
            total.update(m.ops)
        return dict(sorted(total.items()))


# ----------------------------------------------------------------------------------------------------------
# Inputs and the two quick counters.


def _normalize_size(input_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(input_size, bool):
        raise InputError(f"input_size must be an int or (height, width), got {input_size!r}")
    if isinstance(input_size, int):
        size = (input_size, input_size)
    elif isinstance(input_size, (tuple, list)) and len(input_size) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool) for s in input_size
    ):
        size = (int(input_size[0]), int(input_size[1]))
    else:
        raise InputError(f"input_size must be an int or (height, width), got {input_size!r}")
    if min(size) < 1:
        raise InputError(f"input_size must be positive, got {input_size!r}")
    return size


def example_input(
    model: nn.Module,
    input_size: int | tuple[int, int] = 224,
    in_chans: int | None = None,
    batch: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A random ``(batch, in_chans, H, W)`` input on the model's device and in its floating dtype."""
    height, width = _normalize_size(input_size)
    if in_chans is None:
        in_chans = int(getattr(model, "in_chans", 3))
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise InputError(f"in_chans must be a positive integer, got {in_chans!r}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    return torch.randn(batch, in_chans, height, width, dtype=dtype, device=device)


def trace_costs(
    model: nn.Module, input_size: int | tuple[int, int] = 224, in_chans: int | None = None, batch: int = 1
) -> CostTrace:
    """Run one forward pass and return the per-module cost trace."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module, got {type(model).__name__}")
    x = example_input(model, input_size, in_chans, batch)
    trace = CostTrace(model)
    try:
        trace.run(x)
    except RuntimeError as exc:
        raise InputError(
            f"{type(model).__name__} cannot run on input {tuple(x.shape)}: {exc}".splitlines()[0]
        ) from exc
    return trace


def count_macs(model: nn.Module, input_size: int | tuple[int, int] = 224, in_chans: int | None = None) -> int:
    """Multiply-accumulates of one batch-1 forward pass, paper convention.

    Counts convolutions and matrix products (linear layers, matmuls, and attention's QKᵀ and softmax(·)V)
    from the operators that actually run; BatchNorm, activations, pooling and adds are not MACs.
    ``in_chans=None`` uses ``model.in_chans`` if the model has it, else 3.
    """
    return trace_costs(model, input_size, in_chans).total("macs")


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters once)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())
