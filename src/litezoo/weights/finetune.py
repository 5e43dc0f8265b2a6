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
