"""Fine-tuning set-ups: which parameters train, and which BatchNorm layers keep their statistics.

``freeze(model, spec)`` with ``spec``:

* ``"none"``: everything trains (full fine-tuning);
* ``"backbone"``: only the classifier trains (the tutorial's set-up: ``requires_grad = False`` for the rest);
* ``"until:NAME"``: the parameters of module ``NAME`` (e.g. ``stages.1``, ``features.fire5``) and of every module
  registered before it are frozen; later ones train. ``stage_names(model)`` lists the names that work.

BatchNorm layers whose parameters are all frozen are put back in eval mode by the trainer on every epoch
(``litezoo.train.set_train_mode``), so their running statistics stay the pretrained ones.
"""

from __future__ import annotations

import torch.nn as nn

from litezoo.errors import InputError

FREEZE_MODES = ("none", "backbone", "until:<module>")


def stage_names(model: nn.Module) -> list[str]:
    """Module names usable in ``until:NAME``: the top-level children and their children, in registration order."""
    names = []
    for name, child in model.named_children():
        if any(True for _ in child.parameters()):
            names.append(name)
            names += [f"{name}.{sub}" for sub, m in child.named_children() if any(True for _ in m.parameters())]
    return names


def freeze(model: nn.Module, spec: str, head: set[str]) -> list[str]:
    """Set ``requires_grad`` by ``spec`` (see module doc); ``head`` = the classifier's parameter names.

    Returns the names of the frozen parameters.
    """
    params = list(model.named_parameters())
    if spec == "none":
        frozen: set[str] = set()
    elif spec == "backbone":
        frozen = {n for n, _ in params if n not in head}
    elif spec.startswith("until:"):
        target = spec[len("until:"):]
        inside = [i for i, (n, _) in enumerate(params) if n.startswith(target + ".")]
        if not inside:
            raise InputError(
                f"freeze until:{target}: {getattr(model, 'model_name', 'the model')} has no module {target!r} "
                f"with parameters; choose one of {', '.join(stage_names(model))}"
            )
        frozen = {n for n, _ in params[: inside[-1] + 1] if n not in head}
    else:
        raise InputError(f"model.freeze must be one of {', '.join(FREEZE_MODES)}, got {spec!r}")
    for name, p in params:
        p.requires_grad_(name not in frozen)
    return sorted(frozen)


# ---------------------------------------------------------------------------------------------------------------
# Head-only training on cached features


def cache_features(model: nn.Module, batches, *, dtype=None):
    """Run the frozen backbone once over ``batches`` of (x, y); returns (features, labels) on the CPU.

    ``features``: ``model.forward_features`` outputs, (N, num_features, h, w), stored in ``dtype`` (default: the
    output's own; ``torch.bfloat16`` halves the memory). Feed it un-augmented batches: an augmented view computed
    once is one fixed view, not augmentation -- so this path trades augmentation for a single backbone pass.
    """
    import torch

    feats, labels = [], []
    model.eval()
    with torch.inference_mode():
        for x, y in batches:
            f = model.forward_features(x)  # (B, C, h, w)
            feats.append(f.to("cpu", dtype or f.dtype))
            labels.append(y.cpu())
    return torch.cat(feats), torch.cat(labels)


def train_head_on_features(
    model: nn.Module,
    train: tuple,
    test: tuple,
    *,
    epochs: int,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Train only ``model``'s classifier (``forward_head``) on cached features with SGD; one row per epoch
    (train loss, test top-1 on the cached test features, seconds)."""
    import time

    import torch
    import torch.nn.functional as F

    head_params = [p for p in model.parameters() if p.requires_grad]
    if not head_params:
        raise InputError("train_head_on_features: the model has no trainable (unfrozen) parameters")
    opt = torch.optim.SGD(head_params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    (xs, ys), (xt, yt) = train, test
    g = torch.Generator().manual_seed(seed)
    history, t0 = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(xs), generator=g)
        loss_sum = 0.0
        for i in range(0, len(xs), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model.forward_head(xs[idx].float()), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        model.eval()
        with torch.inference_mode():
            correct = sum(
                (model.forward_head(xt[i : i + 500].float()).argmax(1) == yt[i : i + 500]).sum().item()
                for i in range(0, len(xt), 500)
            )
        history.append({"epoch": epoch, "train_loss": loss_sum / len(xs), "test_top1": 100.0 * correct / len(xt),
                        "time_s": time.perf_counter() - t0})  # fmt: skip
    return history


def fit_cached_head(cfg, run_dir, *, note=lambda text: None, download: bool = True) -> dict:
    """``litezoo train --cache-features true``: head-only fine-tuning on features computed once.

    Builds the run as ``litezoo.train.fit`` does (data, ``model.init_from``, a frozen backbone, optimizer and lr
    schedule of the config), runs the backbone once over the un-augmented training and test images, then trains
    the classifier on the stored maps for ``train.epochs``. Writes ``config.yaml``, ``metrics.jsonl`` (one row
    per epoch) and ``model.safetensors`` into ``run_dir``; no checkpoints (a rerun costs one backbone pass).
    Augmentation settings are not used on this path (a view computed once is not augmentation).
    """
    import json
    import time
    from pathlib import Path

    import torch

    from litezoo import checkpoint as ckpt_io
    from litezoo.config import save_yaml, validate
    from litezoo.data import BatchLoader
    from litezoo.device import resolve_device
    from litezoo.fsutil import atomic_write_bytes
    from litezoo.run import build_run

    validate(cfg)
    if ("backbone" if cfg.model.freeze_features else cfg.model.freeze) != "backbone":
        raise InputError("train.cache_features needs a frozen backbone: add --freeze backbone (and --init-from)")
    run_dir = Path(run_dir)
    if (run_dir / "metrics.jsonl").exists() or (run_dir / ckpt_io.CHECKPOINT_DIR).exists():
        raise InputError(f"{run_dir} already holds a run; choose another --out")
    t_start = time.perf_counter()
    run = build_run(cfg, resolve_device(cfg.train.device), download=download, note=note)
    model, meta = run.model, run.meta
    plain = BatchLoader(run.train_loader.ds, cfg.data.eval_batch_size, train=False, device=run.device,
                        mean=tuple(meta.mean), std=tuple(meta.std), channels_last=run.channels_last,
                        num_classes=meta.num_classes)  # fmt: skip
    with run.autocast():
        xs, ys = cache_features(model, plain)
        xt, yt = cache_features(model, run.test_loader)
    mb = (xs.numel() * xs.element_size() + xt.numel() * xt.element_size()) / 1e6
    note(f"cached {len(xs) + len(xt)} feature maps {tuple(xs.shape[1:])} ({xs.dtype}): {mb:.0f} MB, "
         f"{time.perf_counter() - t_start:.1f} s")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(run.cfg, run_dir / "config.yaml")
    bs, steps, g = cfg.data.batch_size, run.steps_per_epoch, torch.Generator().manual_seed(cfg.train.seed)
    rows, best, step, train_time = [], None, 0, 0.0
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order, loss_sum = torch.randperm(len(xs), generator=g), 0.0
        for i in range(steps):  # the same number of steps per epoch as the lr schedule was built for
            idx = order[i * bs : (i + 1) * bs]
            with run.autocast():
                loss = run.criterion(model.forward_head(xs[idx].to(run.device)), ys[idx].to(run.device))
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            run.scheduler.step()
            loss_sum, step = loss_sum + loss.item() * len(idx), step + 1
        train_time += time.perf_counter() - t0
        model.eval()
        correct, test_loss = 0, 0.0
        with torch.inference_mode(), run.autocast():
            for i in range(0, len(xt), 500):
                logits = model.forward_head(xt[i : i + 500].to(run.device)).float()
                target = yt[i : i + 500].to(run.device)
                correct += int((logits.argmax(1) == target).sum())
                test_loss += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
        row = {"epoch": epoch, "step": step, "lr": run.optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum / (steps * bs), "test_loss": test_loss / len(xt),
               "test_top1": 100.0 * correct / len(xt), "train_time_s": train_time,
               "time_s": time.perf_counter() - t_start}  # fmt: skip
        rows.append(row)
        if best is None or row["test_top1"] > best["test_top1"]:
            best = row
        note(f"epoch {epoch}/{cfg.train.epochs}  train loss {row['train_loss']:.4f}  test top-1 {row['test_top1']:.2f}%")
        atomic_write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), run_dir / "metrics.jsonl")
    ckpt_io.export_safetensors(model.state_dict(), run_dir / ckpt_io.SAFETENSORS,
                               {**meta.to_dict(), "epoch": cfg.train.epochs, "ema": False})  # fmt: skip
    return {**rows[-1], "best_top1": best["test_top1"], "best_epoch": best["epoch"], "steps_this_run": step,
            "curves": str(run_dir / "metrics.jsonl"), "cache_memory_mb": round(mb, 1)}  # fmt: skip
