"""Evaluation: loss, top-1/top-5, per-class accuracy and the confusion matrix, with optional flip TTA.

Counts (not averages) are accumulated, so a data-parallel evaluation sums them across processes and gets
exactly the single-process numbers. A model whose top-1 prediction is the same class for every image (a dead
network: e.g. all-zero logits) is flagged (``EvalResult.constant_predictions``): its accuracy is the share of
that class and says nothing about learning.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo import distributed
from litezoo.checkpoint import load_weights, write_file
from litezoo.data import BatchLoader, open_dataset
from litezoo.device import resolve_device
from litezoo.errors import InputError
from litezoo.precision import autocast as precision_autocast
from litezoo.precision import choose_precision
from litezoo.registry import create_model


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy (no label smoothing)
    top1: float  # percent
    top5: float  # percent; top-k with k = min(5, number of classes)
    num_samples: int
    confusion: np.ndarray  # (K, K) int64: rows = true class, columns = predicted class
    classes: list[str]
    logit_spread: float | None = None  # max over classes of (largest - smallest logit over all images)

    @property
    def constant_predictions(self) -> bool:
        """True when every image (of more than one) got the same top-1 class."""
        return self.num_samples > 1 and int((self.confusion.sum(axis=0) > 0).sum()) == 1

    def constant_predictions_text(self) -> str:
        """One line saying what was constant (for logs)."""
        predicted = self.classes[int(self.confusion.sum(axis=0).argmax())]
        same = "; its logits are identical for every image (it ignores its input)" if self.logit_spread == 0 else ""
        return f"the model predicted class {predicted!r} for all {self.num_samples} images{same}"

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Percent correct per true class (NaN for a class with no samples)."""
        support = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * np.diag(self.confusion) / support

    def to_dict(self) -> dict[str, Any]:
        support = self.confusion.sum(axis=1)
        acc = self.per_class_accuracy
        return {
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "num_samples": self.num_samples,
            "per_class": [
                {"class": c, "support": int(n), "top1": None if np.isnan(a) else float(a)}
                for c, n, a in zip(self.classes, support, acc)
            ],
            "confusion": self.confusion.tolist(),
            "constant_predictions": self.constant_predictions,
        }


def shift_reflect(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (N, C, H, W) moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    h, w = x.shape[-2:]
    if p >= min(h, w):
        raise ValueError(f"cannot shift a {h}x{w} image by {p} px with reflect padding (needs {p} < {min(h, w)})")
    padded = F.pad(x, (p, p, p, p), mode="reflect")  # (N, C, H + 2p, W + 2p)
    # Output pixel (i, j) shows input pixel (i - dy, j - dx).
    return padded[:, :, p - dy : p - dy + h, p - dx : p - dx + w]


def tta_logits(model: nn.Module, x: torch.Tensor, *, flip: bool = False, translate: int = 0) -> torch.Tensor:
    """The model's logits for ``x`` (N, C, H, W), averaged over test-time views (airbench's TTA levels).

    flip: the mean over the image and its mirror (width is dim 3 for NCHW and channels_last alike).
    translate=p: half of that for the image itself, half for the mean of two copies shifted diagonally by
    -p and +p pixels (airbench's level 2 with p=1): the unshifted view keeps the larger weight.
    """

    def view(v: torch.Tensor) -> torch.Tensor:
        return (model(v) + model(torch.flip(v, dims=(3,)))) / 2 if flip else model(v)

    logits = view(x)
    if translate:
        shifted = (view(shift_reflect(x, -translate, -translate)) + view(shift_reflect(x, translate, translate))) / 2
        logits = (logits + shifted) / 2
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    classes: list[str] | None = None,
    tta_flip: bool = False,
    tta_translate: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on every batch of ``loader`` (inputs already normalised and on the model's device).

    Test-time augmentation (:func:`tta_logits`): ``tta_flip`` averages with the mirrored images,
    ``tta_translate`` (pixels) also with the images shifted diagonally by that much either way.

    ``autocast`` is a zero-argument factory of the mixed-precision context (None: full precision). Under
    ``torch.distributed`` each process evaluates its shard and the counts are summed across processes.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k = min(5, num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top_k_correct = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    lowest = torch.full((num_classes,), float("inf"), device=device)  # per class, over all images
    highest = torch.full((num_classes,), float("-inf"), device=device)
    if tta_translate < 0:
        raise InputError(f"tta_translate must be >= 0 pixels, got {tta_translate}")
    for x, y in loader:
        with autocast() if autocast else contextlib.nullcontext():
            logits = tta_logits(model, x, flip=tta_flip, translate=tta_translate)
        logits = logits.float()  # (B, K)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        top = logits.topk(k, dim=1).indices  # (B, k)
        top_k_correct += (top == y[:, None]).any(dim=1).sum()
        confusion += torch.bincount(y * num_classes + top[:, 0], minlength=num_classes * num_classes)
        lowest = torch.minimum(lowest, logits.min(dim=0).values)
        highest = torch.maximum(highest, logits.max(dim=0).values)
    model.train(was_training)

    # Sum across processes (a no-op in a single process).
    loss_sum = distributed.all_reduce_sum(loss_sum)
    top_k_correct = distributed.all_reduce_sum(top_k_correct)
    confusion = distributed.all_reduce_sum(confusion)
    spread = (distributed.all_reduce_max(highest) + distributed.all_reduce_max(-lowest)).max()

    cm = confusion.view(num_classes, num_classes).cpu().numpy()
    n = int(cm.sum())
    if n == 0:
        raise ValueError("evaluate: the loader produced no samples")
    return EvalResult(
        loss=float(loss_sum) / n,
        top1=100.0 * float(np.trace(cm)) / n,
        top5=100.0 * float(top_k_correct) / n,
        num_samples=n,
        confusion=cm,
        classes=list(classes) if classes is not None else [str(i) for i in range(num_classes)],
        logit_spread=float(spread),
    )


# ---------------------------------------------------------------------------------------------------------------
# Reports


def format_report(result: EvalResult, *, max_matrix_classes: int = 20) -> str:
    """Human-readable summary: totals, per-class accuracy, and the confusion matrix when it fits on screen."""
    k = min(5, len(result.classes))
    lines = [
        f"samples {result.num_samples}   loss {result.loss:.4f}   top-1 {result.top1:.2f}%   "
        f"top-{k} {result.top5:.2f}%",
        "",
        "per-class accuracy:",
    ]
    if result.constant_predictions:
        lines[1:1] = [f"warning: {result.constant_predictions_text()}"]
    width = max(len(c) for c in result.classes)
    support = result.confusion.sum(axis=1)
    for name, n, acc in zip(result.classes, support, result.per_class_accuracy):
        acc_text = "   n/a" if np.isnan(acc) else f"{acc:6.2f}%"
        lines.append(f"  {name:<{width}}  {acc_text}  (n={n})")
    if len(result.classes) <= max_matrix_classes:
        lines += ["", "confusion matrix (rows: true class, columns: predicted):", format_confusion(result)]
    return "\n".join(lines)


def format_confusion(result: EvalResult) -> str:
    cm = result.confusion
    labels = [c[:8] for c in result.classes]
    cell = max(5, max(len(label) for label in labels), len(str(int(cm.max()))) if cm.size else 1)
    head = " " * (cell + 2) + " ".join(f"{label:>{cell}}" for label in labels)
    rows = [f"{label:>{cell}}  " + " ".join(f"{v:>{cell}d}" for v in row) for label, row in zip(labels, cm)]
    return "\n".join([head, *rows])


def save_confusion_png(result: EvalResult, path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot the row-normalised confusion matrix (per-class recall) with the counts written in small matrices."""
    cm = result.confusion
    k = len(result.classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    side = min(4 + 0.45 * k, 24)
    # matplotlib is imported here, not at the top: it costs ~0.3 s and only this report needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure with its own Agg canvas: no pyplot, no global backend switch, nothing kept after the call.
    fig = Figure(figsize=(side, side * 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if k <= 40:
        ax.set_xticks(range(k), labels=result.classes, rotation=90 if k > 10 else 45, ha="right")
        ax.set_yticks(range(k), labels=result.classes)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"top-1 {result.top1:.2f}% on {result.num_samples} images")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return write_file(buf.getvalue(), path)


# ---------------------------------------------------------------------------------------------------------------
# A trained model from its files


def load_trained_model(
    target: str | os.PathLike, device: torch.device | str = "cpu", weights: str = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a run folder / .pt checkpoint / .safetensors file: (model in eval mode, metadata).

    ``weights``: auto | raw | ema, see :func:`litezoo.checkpoint.load_weights`.
    """
    state, meta = load_weights(target, weights)
    # The build options the run recorded (e.g. EfficientNet's bn_eps after torchvision weights): the same model.
    model = create_model(meta["model_name"], num_classes=meta["num_classes"], in_chans=meta["in_chans"],
                         **(meta.get("options") or {}))  # fmt: skip
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise InputError(f"the weights in {target} do not fit {meta['model_name']}: {first_line}") from None
    return model.to(device).eval(), meta


class Ensemble(nn.Module):
    """Several trained classifiers as one model: the log of their mean class probabilities.

    Probabilities, not logits, are averaged, so one over-confident member cannot outvote the others; the log of
    the mean is a valid set of logits (softmax gives the mean back), so loss, top-k and flip TTA apply unchanged.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(dim=-1) for m in self.members]).mean(dim=0)  # (B, K)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def load_trained_ensemble(
    targets: list[str | os.PathLike], device: torch.device | str = "cpu", weights: str = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_trained_model` for several runs at once: one model, or an :class:`Ensemble` of them.

    The members must agree on what they were trained for: classes, input channels, image size and normalisation
    (they see the same batches). The metadata is the first member's, with ``members`` listing every model.
    """
    if not targets:
        raise InputError("no model to evaluate")
    loaded = [load_trained_model(t, device, weights) for t in targets]
    if len(loaded) == 1:
        return loaded[0]
    first_meta = loaded[0][1]
    for target, (_, meta) in zip(targets[1:], loaded[1:]):
        for key in ("classes", "in_chans", "image_size", "mean", "std"):
            if list(np.atleast_1d(meta[key])) != list(np.atleast_1d(first_meta[key])):
                raise InputError(
                    f"cannot ensemble {target} with {targets[0]}: their {key} differ "
                    f"({meta[key]} vs {first_meta[key]})"
                )
    names = [meta["model_name"] for _, meta in loaded]
    kinds = names[0] if len(set(names)) == 1 else ", ".join(names)
    meta = {**first_meta, "model_name": f"ensemble of {len(names)} {kinds}", "members": names}
    return Ensemble([model for model, _ in loaded]).to(device).eval(), meta


def match_classes(
    meta: dict[str, Any], folders: list[str], names: list[str], data: str | os.PathLike, *, names_given: bool = False
) -> list[str]:
    """The class names to report when evaluating the model of ``meta`` on a dataset with class ``folders``
    (sorted, as labels index them) shown as ``names``; InputError when the dataset's classes are not the model's.

    A run trained with a names file (``--class-names``, ``classes.txt``) stores its display names in
    ``meta["classes"]`` and, since that field exists, the folders behind them in ``meta["class_folders"]``:
    the folders are then compared, so the same data evaluates without the names file, and the stored names are
    shown (or ``names`` when ``names_given``: a names file given for this evaluation). Older files have only the
    names: they must equal the data's display names or its folder names.
    """
    trained = list(meta["classes"])
    stored_folders = meta.get("class_folders")
    if stored_folders is not None:
        if list(folders) == list(stored_folders):
            return list(names) if names_given else trained
        raise InputError(
            f"the data at {data} has class folders {list(folders)}, but the model was trained on "
            f"{list(stored_folders)}"
        )
    if list(names) == trained:
        return trained
    if list(folders) == trained:  # trained without names; the data has a names file now
        return list(names) if names_given else trained
    hint = "" if names_given else (
        "; if the run was trained with a class-names file, pass the same file with --class-names"
    )  # fmt: skip
    raise InputError(f"the data at {data} has classes {list(names)}, but the model was trained on {trained}{hint}")


def evaluate_saved(
    target: str | os.PathLike | list[str | os.PathLike],
    data: str | os.PathLike,
    *,
    split: str = "test",
    tta_flip: bool = False,
    tta_translate: int = 0,
    weights: str = "auto",
    batch_size: int = 500,
    device: str = "auto",
    amp: str = "off",
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    download: bool = True,
    class_names: str | os.PathLike | None = None,
) -> tuple[EvalResult, dict[str, Any]]:
    """Evaluate a trained model on ``split`` of ``data`` with the training run's normalisation and image size.

    ``target`` may be a list of runs: their :class:`Ensemble` (mean class probabilities) is evaluated.
    ``weights``: auto | raw | ema (:func:`litezoo.checkpoint.load_weights`).
    ``class_names``: a names file for the class folders (:mod:`litezoo.data.classnames`). Not needed for a run
    trained with one: the data is matched to the model by :func:`match_classes`, and the report shows the names
    the model was trained with unless this file gives others.
    """
    dev = resolve_device(device)
    precision = choose_precision(amp, dev)
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    model, meta = load_trained_ensemble(targets, dev, weights)
    if not 0 <= tta_translate < meta["image_size"]:
        raise InputError(f"tta_translate must be 0 to {meta['image_size'] - 1} px for {meta['image_size']}px images, "
                         f"got {tta_translate}")  # fmt: skip
    ds = open_dataset(data, split, image_size=meta["image_size"], cache_dir=cache_dir, limit=limit,
                      download=download, class_names=class_names)  # fmt: skip
    classes = match_classes(meta, ds.class_folders, ds.classes, data, names_given=class_names is not None)
    loader = BatchLoader(ds, batch_size, train=False, device=dev, rank=0, world_size=1,
                         mean=tuple(meta["mean"]), std=tuple(meta["std"]))  # fmt: skip
    result = evaluate(model, loader, num_classes=meta["num_classes"], classes=classes, tta_flip=tta_flip,
                      tta_translate=tta_translate, autocast=lambda: precision_autocast(precision, dev))  # fmt: skip
    info = {"split": ds.split, "data": str(data), "tta_flip": tta_flip, "tta_translate": tta_translate,
            "weights": "ema" if meta.get("ema") else "raw"}  # fmt: skip
    return result, {**meta, **info, "precision": precision.mode}
