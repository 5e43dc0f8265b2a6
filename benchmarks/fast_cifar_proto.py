"""Self-contained prototype for litezoo's fast CIFAR-10 recipe on a CPU (see docs/fast_cifar.md).

It exists to find, by experiment, the recipe that the litezoo trainer (src/litezoo/train.py) will ship in
configs/: the net is an airbench-style VGG (conv-pool-BN-act groups), the data are the shared CIFAR-10 JPEGs
decoded once into uint8 arrays, augmentation is batched on tensors (random crop by shifting + flip), and
the loop is a plain SGD-nesterov loop with the levers under test switchable from the command line.

Two modes:
  python benchmarks/fast_cifar_proto.py bench --models airvgg shufflenet_v2_x1_0_cifar --batch 512 \
         --out benchmarks/results/fast_cifar_proto_bench.json
      training throughput (img/s) of the net (and zoo models) fp32 vs bf16, channels_last or not, all
      configurations interleaved step by step in one process so the ratios hold on a shared machine.
  python benchmarks/fast_cifar_proto.py train --epochs 10 --out benchmarks/results/fast_cifar_proto_<name>.json
      one training run; the JSON (config, per-epoch train time excluding eval, test top-1 plain/flip-TTA,
      thresholds reached) is rewritten atomically after every epoch so a killed run loses nothing.

Nothing here is imported by litezoo; it is a benchmark script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path("/work/shared/data/cifar10")
CACHE_DIR = ROOT / ".cache" / "proto"
THRESHOLDS = (0.80, 0.85, 0.90, 0.93, 0.94)
# Per-channel statistics of the CIFAR-10 training set (0..1 scale).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------------------------------------
# Data: decode the JPEG folders once into uint8 arrays, then keep everything as tensors.
# ----------------------------------------------------------------------------------------------------------


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 32, 32, 3) uint8 images and (N,) int64 labels; decoded from JPEG on first use, then cached."""
    x_path, y_path = CACHE_DIR / f"{split}_x.npy", CACHE_DIR / f"{split}_y.npy"
    if not (x_path.exists() and y_path.exists()):
        from PIL import Image

        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        classes = sorted(p.name for p in (DATA_DIR / "train").iterdir() if p.is_dir())
        xs, ys = [], []
        for ci, cname in enumerate(classes):
            for f in sorted((DATA_DIR / split / cname).glob("*.jpg")):
                with Image.open(f) as im:
                    xs.append(np.asarray(im.convert("RGB")))
                ys.append(ci)
        _atomic_save_npy(x_path, np.stack(xs))
        _atomic_save_npy(y_path, np.asarray(ys, dtype=np.int64))
    return torch.from_numpy(np.load(x_path)), torch.from_numpy(np.load(y_path))


def to_float(images_u8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) normalised float32."""
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1) * 255
    x = images_u8.permute(0, 3, 1, 2).float()
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def batch_crop_flip(
    padded_u8: torch.Tensor, idx: torch.Tensor, pad: int, flip: torch.Tensor | None, gen: torch.Generator
) -> torch.Tensor:
    """Random translation by up to ``pad`` px (crop of a pre-padded uint8 set) and an optional flip, batched.

    padded_u8: (N, H+2p, W+2p, 3) uint8; idx: (B,) indices into it; flip: (B,) bool or None. Returns (B, H, W, 3).
    Uses one gather per batch instead of a Python loop over samples.
    """
    b = idx.numel()
    hp, wp = padded_u8.shape[1], padded_u8.shape[2]
    h, w = hp - 2 * pad, wp - 2 * pad
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h))  # (B, H)
    cols = dx.view(b, 1) + torch.arange(w).view(1, w)  # (B, W)
    if flip is not None:
        cols = torch.where(flip.view(b, 1), cols.flip(1), cols)
    src = padded_u8[idx]  # (B, Hp, Wp, 3)
    src = src.gather(1, rows.view(b, h, 1, 1).expand(b, h, wp, 3))  # (B, H, Wp, 3)
    return src.gather(2, cols.view(b, 1, w, 1).expand(b, h, w, 3))  # (B, H, W, 3)


def batch_cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero a random size x size square per image (x: (B, H, W, 3) uint8, in place on a copy)."""
    b, h, w, _ = x.shape
    cy = torch.randint(0, h, (b, 1), generator=gen)
    cx = torch.randint(0, w, (b, 1), generator=gen)
    ys = torch.arange(h).view(1, h)
    xs = torch.arange(w).view(1, w)
    my = ((ys - cy >= -(size // 2)) & (ys - cy < size - size // 2)).view(b, h, 1)  # (B, H, 1)
    mx = ((xs - cx >= -(size // 2)) & (xs - cx < size - size // 2)).view(b, 1, w)  # (B, 1, W)
    return x.masked_fill((my & mx).unsqueeze(-1), 0)


# ----------------------------------------------------------------------------------------------------------
# The net: airbench-style VGG. conv(3x3) -> maxpool(2) -> BN -> GELU -> conv(3x3) -> BN -> GELU per group.
# ----------------------------------------------------------------------------------------------------------


class ScaledBiasBN(nn.BatchNorm2d):
    """BatchNorm whose affine weight is frozen at 1 and whose bias is stored divided by ``bias_scale``.

    Storing b = s * p makes plain SGD move b with an s^2 larger learning rate (and the same relative weight
    decay) -- airbench's 64x "bias_scaler" (s = 8) without a separate optimizer parameter group, so the
    litezoo trainer's single-lr SGD gives the same dynamics.
    """

    def __init__(self, chs: int, bias_scale: float, momentum: float, eps: float):
        super().__init__(chs, eps=eps, momentum=momentum)
        self.bias_scale = bias_scale
        self.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias * self.bias_scale,
            self.training,
            self.momentum,
            self.eps,
        )


class WhiteningStem(nn.Module):
    """2x2 conv (3 -> 24, no padding: 32 -> 31 px) initialised from the first training batch it sees.

    The 12 eigenvectors of the 2x2x3 patch covariance, scaled by 1/sqrt(eigenvalue), and their negatives
    (so GELU keeps both signs). Frozen weights, trainable bias. Data-dependent init happens inside forward(),
    so a generic trainer needs no hook; ``initialized`` is a buffer, so checkpoints restore it.
    """

    def __init__(self, in_chans: int = 3, kernel_size: int = 2, eps: float = 5e-4):
        super().__init__()
        dim = in_chans * kernel_size * kernel_size
        self.conv = nn.Conv2d(in_chans, 2 * dim, kernel_size, padding=0, bias=True)
        self.conv.weight.requires_grad_(False)
        nn.init.zeros_(self.conv.bias)
        self.eps = eps
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.out_chs = 2 * dim

    @torch.no_grad()
    @torch.autocast("cpu", enabled=False)
    def init_from(self, x: torch.Tensor) -> None:
        c, k = x.shape[1], self.conv.kernel_size[0]
        patches = x.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)  # (N*H'*W', C*k*k)
        cov = patches.T @ patches / patches.shape[0]
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0), evecs.T.flip(0)  # (D,), (D, D) rows = eigenvectors, largest first
        w = (evecs / torch.sqrt(evals + self.eps).view(-1, 1)).view(-1, c, k, k)
        self.conv.weight.copy_(torch.cat([w, -w]))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.initialized):
            self.init_from(x)
        return F.gelu(self.conv(x))


class _Bf16ConvFp32Wgrad(torch.autograd.Function):
    """Conv2d: forward and input gradient in the low-precision dtype, weight gradient from fp32 inputs.

    Why: on this Sapphire Rapids CPU, oneDNN's AMX bf16 kernels are ~8x faster than fp32 for the forward and
    the input gradient, but its AMX bf16 *weight*-gradient kernel (brgconv_bwd_w) is slower than the fp32 one
    for small maps (7x7, 3x3) -- so plain bf16 autocast trains this net slower than fp32 (see the bench).
    """

    @staticmethod
    def forward(ctx, x, w, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conv = (stride, padding, dilation, groups)
        return F.conv2d(x, w, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        conv_args = (None, stride, padding, dilation, False, (0, 0), groups)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad_out, x, w, *conv_args, (True, False, False))[0]
        grad_w = torch.ops.aten.convolution_backward(
            grad_out.float(), x.float(), w.float(), *conv_args, (False, True, False)
        )[1]
        return grad_x, grad_w.to(w.dtype), None, None, None, None


def conv_fp32_wgrad_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor | None:
    """conv(x) through _Bf16ConvFp32Wgrad when CPU autocast is on; None when it does not apply."""
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu") or conv.bias is not None:
        return None
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    dt = torch.get_autocast_dtype("cpu")
    with torch.autocast("cpu", enabled=False):
        return _Bf16ConvFp32Wgrad.apply(
            x.to(dt), conv.weight.to(dt), conv.stride, conv.padding, conv.dilation, conv.groups
        )


class Conv3x3(nn.Conv2d):
    """nn.Conv2d(k=3, pad=1, no bias); under CPU autocast with ``fp32_wgrad`` it uses _Bf16ConvFp32Wgrad."""

    def __init__(self, cin: int, cout: int, fp32_wgrad: bool):
        super().__init__(cin, cout, 3, padding=1, bias=False)
        self.fp32_wgrad = fp32_wgrad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_fp32_wgrad_forward(self, x) if self.fp32_wgrad else None
        return super().forward(x) if y is None else y


class _PatchedConvForward:
    def __init__(self, conv: nn.Conv2d):
        self.conv = conv

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_fp32_wgrad_forward(self.conv, x)
        return nn.Conv2d.forward(self.conv, x) if y is None else y


def patch_convs_fp32_wgrad(model: nn.Module) -> int:
    """Route every bias-free nn.Conv2d of ``model`` through _Bf16ConvFp32Wgrad (for zoo models); returns the count."""
    n = 0
    for m in model.modules():
        if type(m) is nn.Conv2d and m.bias is None:
            m.forward = _PatchedConvForward(m)
            n += 1
    return n


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int, bn_kw: dict, act: str, fp32_wgrad: bool = False):
        super().__init__()
        self.conv1 = Conv3x3(cin, cout, fp32_wgrad)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ScaledBiasBN(cout, **bn_kw)
        self.conv2 = Conv3x3(cout, cout, fp32_wgrad)
        self.norm2 = ScaledBiasBN(cout, **bn_kw)
        self.act = nn.GELU() if act == "gelu" else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # pool before BN: BN/act on 1/4 of the pixels
        return self.act(self.norm2(self.conv2(x)))


class AirVGG(nn.Module):
    def __init__(
        self,
        widths=(64, 256, 256),
        stem: str = "whiten",
        num_classes: int = 10,
        head_scale: float = 1 / 9,
        bias_scale: float = 8.0,
        bn_momentum: float = 0.4,
        bn_eps: float = 1e-12,
        act: str = "gelu",
        dirac: bool = True,
        fp32_wgrad: bool = False,
    ):
        super().__init__()
        bn_kw = dict(bias_scale=bias_scale, momentum=bn_momentum, eps=bn_eps)
        if stem == "whiten":
            self.stem = WhiteningStem()
            c = self.stem.out_chs
        else:  # a plain trainable 3x3 conv stem (conv-BN-act), for a trainer without data-dependent init
            c = 32
            self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), ScaledBiasBN(c, **bn_kw), nn.GELU())
        groups = []
        for w in widths:
            groups.append(ConvGroup(c, w, bn_kw, act, fp32_wgrad))
            c = w
        self.groups = nn.Sequential(*groups)
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.head_scale = head_scale
        if dirac:
            # Identity-initialise the first cin output channels of every 3x3 conv: an implicit residual.
            for m in self.groups.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.dirac_(m.weight.data[: m.weight.shape[1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.stem(x))  # (N, C, 3 or 4, 3 or 4)
        x = torch.amax(x, dim=(2, 3))  # global max pool  (N, C)
        return self.fc(x) * self.head_scale


def count_flops(model: nn.Module, size: int = 32) -> int:
    """Forward multiply-accumulates x 2 for conv and linear layers, for one image."""
    flops = 0

    def hook(m, inp, out):
        nonlocal flops
        if isinstance(m, nn.Conv2d):
            k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            flops += 2 * out.numel() // out.shape[0] * k
        elif isinstance(m, nn.Linear):
            flops += 2 * m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))  # eval mode: the whitening stem does not init on this dummy
    model.train(was_training)
    for h in hs:
        h.remove()
    return flops


# ----------------------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------------------


def cpu_info() -> dict:
    info = {"processor": platform.processor(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model_name"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))]
                break
    except OSError:
        pass
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)


def lr_factor(step: int, total: int, sched: str, warmup_frac: float, start: float, end: float) -> float:
    t = step / total
    if t < warmup_frac:  # linear warm-up from start to 1
        return start + (1 - start) * t / warmup_frac
    u = (t - warmup_frac) / max(1e-9, 1 - warmup_frac)
    if sched == "linear":  # airbench's triangle: linear decay to `end`
        return 1 + (end - 1) * u
    if sched == "cosine":
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * u))
    raise ValueError(sched)


@torch.no_grad()
def evaluate(model, test_x, test_y, args, tta_translate: bool = False) -> dict:
    model.eval()
    correct_plain = correct_flip = correct_tr = 0
    for i in range(0, len(test_x), 1000):
        x = to_float(test_x[i : i + 1000], args.channels_last)
        y = test_y[i : i + 1000]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            a = model(x).float()
            b = model(x.flip(-1)).float()
            logits = 0.5 * (a + b)
            correct_plain += (a.argmax(1) == y).sum().item()
            correct_flip += (logits.argmax(1) == y).sum().item()
            if tta_translate:  # airbench's level-2 TTA: +-1 px translations, each mirrored
                xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
                tr = []
                for xs in (xp[:, :, 0:32, 0:32], xp[:, :, 2:34, 2:34]):
                    tr.append(0.5 * (model(xs).float() + model(xs.flip(-1)).float()))
                logits2 = 0.5 * logits + 0.5 * torch.stack(tr).mean(0)
                correct_tr += (logits2.argmax(1) == y).sum().item()
    n = len(test_x)
    out = {"test_top1": correct_plain / n, "test_top1_flip_tta": correct_flip / n}
    if tta_translate:
        out["test_top1_translate_tta"] = correct_tr / n
    model.train()
    return out


def train(args) -> None:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    if args.limit_train:
        train_x, train_y = train_x[: args.limit_train], train_y[: args.limit_train]
    n = len(train_x)
    pad = args.translate
    # Pre-pad the whole uint8 set once (reflect, like airbench); crops are then pure gathers.
    padded = F.pad(train_x.permute(0, 3, 1, 2).float(), (pad,) * 4, mode=args.pad_mode).to(torch.uint8)
    padded = padded.permute(0, 2, 3, 1).contiguous()  # (N, 32+2p, 32+2p, 3)

    model = AirVGG(
        widths=tuple(args.widths),
        stem=args.stem,
        head_scale=args.head_scale,
        bias_scale=args.bias_scale,
        bn_momentum=args.bn_momentum,
        act=args.act,
        dirac=not args.no_dirac,
        fp32_wgrad=bool(args.fp32_wgrad),
    )
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    flops = count_flops(model)
    model.train()

    steps_per_epoch = n // args.batch  # drop_last
    total_steps = int(round(steps_per_epoch * args.epochs))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if (args.no_decay_bn_bias and p.ndim <= 1) else decay).append(p)
    opt = torch.optim.SGD(
        [dict(params=decay, weight_decay=args.wd), dict(params=no_decay, weight_decay=0.0)],
        lr=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
    )
    crit = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    ema_state = None  # lookahead (copy back into the net) or eval-only EMA
    ema_model = None
    if args.ema == "eval":
        import copy

        ema_model = copy.deepcopy(model)

    record = {
        "script": "benchmarks/fast_cifar_proto.py",
        "argv": sys.argv,
        "config": vars(args),
        "cpu": cpu_info(),
        "model_fwd_flops_per_image": flops,
        "params": sum(p.numel() for p in model.parameters()),
        "steps_per_epoch": steps_per_epoch,
        "epochs": [],
        "time_to": {},
        "status": "running",
    }
    out = Path(args.out)
    write_json(out, record)
    train_time = 0.0
    step = 0
    epoch = 0
    while step < total_steps:
        epoch += 1
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        if args.flip == "alternate":
            # airbench: a fixed random half flipped, and the whole set flipped on odd epochs
            base = torch.rand(n, generator=torch.Generator().manual_seed(args.seed + 1)) < 0.5
            flip_all = base ^ (epoch % 2 == 0)
        else:
            flip_all = torch.rand(n, generator=gen) < 0.5
        model.train()
        losses = []
        for i in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = perm[i * args.batch : (i + 1) * args.batch]
            xb_u8 = batch_crop_flip(padded, idx, pad, flip_all[idx], gen)
            if args.cutout:
                xb_u8 = batch_cutout(xb_u8, args.cutout, gen)
            xb = to_float(xb_u8, args.channels_last)
            yb = train_y[idx]
            f = lr_factor(step, total_steps, args.sched, args.warmup, args.lr_start, args.lr_end)
            for g in opt.param_groups:
                g["lr"] = args.lr * f
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                logits = model(xb)
            loss = crit(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
            if args.ema == "lookahead" and epoch > args.ema_start and step % args.ema_every == 0:
                # airbench's lookahead: EMA of the weights, copied back into the net; decay warmed up over training
                if ema_state is None:
                    ema_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    rho = (args.ema_base ** args.ema_every) * (step / total_steps) ** 3
                    with torch.no_grad():
                        for (k, e), v in zip(ema_state.items(), model.state_dict().values()):
                            if v.dtype.is_floating_point:
                                e.lerp_(v, 1 - rho)
                                v.copy_(e)
            elif args.ema == "eval":
                with torch.no_grad():
                    # litezoo.ema.ModelEma's decay warm-up: min(decay, (1 + n) / (10 + n)) for update n
                    d = min(args.ema_decay, step / (9.0 + step))
                    for e, v in zip(ema_model.state_dict().values(), model.state_dict().values()):
                        if v.dtype.is_floating_point:
                            e.lerp_(v, 1 - d)
                        else:
                            e.copy_(v)
        if ema_state is not None:
            with torch.no_grad():
                for e, v in zip(ema_state.values(), model.state_dict().values()):
                    if v.dtype.is_floating_point:
                        v.copy_(e)
        ep_time = time.perf_counter() - t0
        train_time += ep_time
        last = step >= total_steps
        eval_model = ema_model if ema_model is not None else model
        if last or epoch % args.eval_every == 0:
            t1 = time.perf_counter()
            ev = evaluate(eval_model, test_x, test_y, args, tta_translate=last)
            if ema_model is not None:
                ev_raw = evaluate(model, test_x, test_y, args)
                ev["raw_test_top1"] = ev_raw["test_top1"]
                ev["raw_test_top1_flip_tta"] = ev_raw["test_top1_flip_tta"]
            eval_s = time.perf_counter() - t1
        else:
            ev, eval_s = {}, 0.0
        row = {
            "epoch": epoch,
            "train_time_s": round(train_time, 2),
            "epoch_time_s": round(ep_time, 2),
            "img_per_s": round(steps_per_epoch * args.batch / ep_time, 1),
            "train_loss": float(np.mean(losses)) if losses else None,
            "eval_time_s": round(eval_s, 2),
            "loadavg": os.getloadavg()[0],
            **ev,
        }
        record["epochs"].append(row)
        for key in ("test_top1", "test_top1_flip_tta"):
            for th in THRESHOLDS:
                tk = f"{key}>={th:.2f}"
                if key in ev and ev[key] >= th and tk not in record["time_to"]:
                    record["time_to"][tk] = {"epoch": epoch, "train_time_s": round(train_time, 2)}
        print(json.dumps(row), flush=True)
        write_json(out, record)
    record["status"] = "done"
    record["total_train_time_s"] = round(train_time, 2)
    record["train_pflop"] = round(3 * flops * total_steps * args.batch / 1e15, 4)
    write_json(out, record)


# ----------------------------------------------------------------------------------------------------------
# Throughput benchmark
# ----------------------------------------------------------------------------------------------------------


def _train_step(model, x, y, opt, precision: str) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = F.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench(args) -> None:
    """Training img/s (forward + backward + SGD step, random 32 px data), configurations interleaved.

    The machine may be shared, so every configuration gets one step per round, round after round, and the
    reported figure is the median over rounds: the ratios between configurations are comparable even when
    the absolute numbers are depressed by other load.
    """
    import statistics

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = []  # (label, model name, precision, channels_last, fp32_wgrad, model, x, y, opt, times)

    def build(name: str, fp32_wgrad: bool) -> nn.Module:
        if name == "airvgg":
            m = AirVGG(widths=tuple(args.widths), fp32_wgrad=fp32_wgrad)
            m.stem.initialized.fill_(True)  # random weights are fine for timing
            return m
        import litezoo

        m = litezoo.create_model(name, num_classes=10)
        if fp32_wgrad:
            patch_convs_fp32_wgrad(m)
        return m

    variants = [("fp32", False), ("bf16", False), ("bf16", True)]
    if args.only:  # e.g. --only bf16+fp32wgrad:1 fp32:0  (precision[+fp32wgrad]:channels_last)
        variants_cl = []
        for spec in args.only:
            prec_s, cl_s = spec.split(":")
            variants_cl.append((prec_s.split("+")[0], prec_s.endswith("+fp32wgrad"), bool(int(cl_s))))
    else:
        variants_cl = [(p_, w_, cl_) for cl_ in (False, True) for p_, w_ in variants]
    for name in args.models:
        for batch in args.batch:
            for prec, wg, cl in variants_cl:
                torch.manual_seed(0)
                m = build(name, wg)
                x = torch.randn(batch, 3, 32, 32)
                if cl:
                    m = m.to(memory_format=torch.channels_last)
                    x = x.contiguous(memory_format=torch.channels_last)
                m.train()
                y = torch.randint(0, 10, (batch,))
                opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, nesterov=True)
                label = f"{name} {prec}{'+fp32wgrad' if wg else ''} {'channels_last' if cl else 'NCHW'} b{batch}"
                configs.append(dict(label=label, model=name, precision=prec, fp32_wgrad=wg, channels_last=cl, batch=batch,
                                    fwd_mflops=round(count_flops(m) / 1e6, 1), m=m, x=x, y=y, opt=opt, times=[]))
    record = {"script": "benchmarks/fast_cifar_proto.py bench", "argv": sys.argv, "cpu": cpu_info(), "rows": []}
    out = Path(args.out)
    for r in range(args.rounds + 1):  # round 0 is warm-up (oneDNN primitive creation)
        for c in configs:
            t0 = time.perf_counter()
            _train_step(c["m"], c["x"], c["y"], c["opt"], c["precision"])
            if r > 0:
                c["times"].append(time.perf_counter() - t0)
        if r == 0:
            continue
        record["rounds_done"] = r
        record["loadavg"] = os.getloadavg()[0]
        record["rows"] = [
            {k: c[k] for k in ("label", "model", "batch", "precision", "fp32_wgrad", "channels_last", "fwd_mflops")}
            | {"train_img_per_s_median": round(c["batch"] / statistics.median(c["times"]), 1),
               "train_img_per_s_best": round(c["batch"] / min(c["times"]), 1)}
            for c in configs
        ]
        print(r, {row["label"]: row["train_img_per_s_median"] for row in record["rows"]}, flush=True)
        write_json(out, record)
    record["status"] = "done"
    write_json(out, record)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--out", default=str(ROOT / "benchmarks/results/fast_cifar_proto_bench.json"))
    b.add_argument("--batch", type=int, nargs="+", default=[512])
    b.add_argument("--only", nargs="*", default=[], help="configs as precision[+fp32wgrad]:channels_last, e.g. fp32:1")
    b.add_argument("--models", nargs="+", default=["airvgg"], help="'airvgg' and/or litezoo registry names")
    b.add_argument("--widths", type=int, nargs=3, default=[64, 256, 256])
    b.add_argument("--rounds", type=int, default=5)
    b.add_argument("--threads", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=float, default=10)
    t.add_argument("--batch", type=int, default=1024)
    t.add_argument("--lr", type=float, default=1.5, help="peak lr for the mean loss (airbench94: 11.5/7.667)")
    t.add_argument("--wd", type=float, default=1.33e-3, help="coupled (torch) wd; airbench94: 0.002/1.5")
    t.add_argument("--momentum", type=float, default=0.85)
    t.add_argument("--nesterov", type=int, default=1)
    t.add_argument("--no-decay-bn-bias", action="store_true")
    t.add_argument("--sched", default="linear", choices=["linear", "cosine"])
    t.add_argument("--warmup", type=float, default=0.23, help="warm-up fraction of training")
    t.add_argument("--lr-start", type=float, default=0.2)
    t.add_argument("--lr-end", type=float, default=0.07)
    t.add_argument("--label-smoothing", type=float, default=0.2)
    t.add_argument("--widths", type=int, nargs=3, default=[64, 256, 256])
    t.add_argument("--stem", default="whiten", choices=["whiten", "conv"])
    t.add_argument("--head-scale", type=float, default=1 / 9)
    t.add_argument("--bias-scale", type=float, default=8.0, help="BN bias stored /s: s^2 x lr for BN biases")
    t.add_argument("--bn-momentum", type=float, default=0.4)
    t.add_argument("--act", default="gelu", choices=["gelu", "relu"])
    t.add_argument("--no-dirac", action="store_true")
    t.add_argument("--translate", type=int, default=2)
    t.add_argument("--pad-mode", default="reflect", choices=["reflect", "constant"])
    t.add_argument("--flip", default="alternate", choices=["alternate", "random"])
    t.add_argument("--cutout", type=int, default=0)
    t.add_argument("--ema", default="lookahead", choices=["lookahead", "eval", "none"])
    t.add_argument("--ema-start", type=int, default=3, help="lookahead starts after this many epochs")
    t.add_argument("--ema-every", type=int, default=5)
    t.add_argument("--ema-base", type=float, default=0.95)
    t.add_argument("--ema-decay", type=float, default=0.99, help="decay per step for --ema eval")
    t.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    t.add_argument("--channels-last", type=int, default=1)
    t.add_argument("--fp32-wgrad", type=int, default=1, help="bf16 convs with fp32 weight gradients (see Conv3x3)")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, default=1)
    t.add_argument("--limit-train", type=int, default=0)
    args = p.parse_args(argv)
    if args.mode == "bench":
        bench(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
