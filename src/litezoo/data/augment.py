"""Augmentation on whole batches of uint8 images, on whatever device they are on.

Inputs are uint8 (B, H, W, 3) tensors straight from the cache; outputs are normalised float32 (B, 3, S, S)
(channels-last in memory if asked: the (B, H, W, 3) layout already is, so that costs nothing).
Normalisation is fused into the same pass that crops: ``x * scale + shift`` with
``scale = 1 / (255 std)`` and ``shift = -mean / std`` per channel.

The random parameters are plain numpy arrays drawn by the caller (the loader draws them from a generator
seeded by (seed, epoch, batch, rank)), so every function here is deterministic given its arguments and can
be checked against a per-sample reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def normalisation(mean, std, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each float32 (1, 3, 1, 1), turning uint8 values v into (v/255 - mean) / std."""
    mean_t = torch.tensor(mean, dtype=torch.float64)
    std_t = torch.tensor(std, dtype=torch.float64)
    if mean_t.shape != (3,) or std_t.shape != (3,) or not bool((std_t > 0).all()):
        raise ValueError(f"mean and std need 3 values each, std > 0; got mean={mean}, std={std}")
    scale = (1.0 / (255.0 * std_t)).float().view(1, 3, 1, 1).to(device)
    shift = (-mean_t / std_t).float().view(1, 3, 1, 1).to(device)
    return scale, shift


def _empty_out(batch: int, size: int, device, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(batch, 3, size, size, dtype=torch.float32, device=device, memory_format=fmt)


def fit_to_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, H, H, 3) -> (B, size, size, 3): centre crop if larger, bilinear upsampling if smaller."""
    side = x.shape[1]
    if side == size:
        return x
    if side > size:
        o = (side - size) // 2
        return x[:, o : o + size, o : o + size]
    up = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear", align_corners=False)
    return up.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def resize_batch(x: torch.Tensor, side: int) -> torch.Tensor:
    """Normalised float (B, C, H, W) -> (B, C, side, side), bilinear with antialiasing, memory format kept."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def normalise(x: torch.Tensor, scale, shift, *, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> normalised float32 (B, 3, S, S), in one pass."""
    out = _empty_out(x.shape[0], x.shape[1], x.device, channels_last)
    return torch.addcmul(shift, x.permute(0, 3, 1, 2), scale, out=out)


def crop_order(top: np.ndarray, left: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """A stable order that puts samples with the same (flip, top, left) next to each other.

    :func:`padded_crop_flip` does one tensor operation per run of equal crops, so a batch in this order
    needs at most (2 * positions) operations instead of one per image.
    """
    return np.lexsort((left, top, flip))


def padded_crop_flip(
    x: torch.Tensor,
    top: np.ndarray,
    left: np.ndarray,
    flip: np.ndarray,
    size: int,
    padding: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip + normalisation, for a whole batch.

    For each b: pad x[b] with ``padding`` zero (black) pixels on every side, take the ``size`` x ``size``
    window at (top[b], left[b]) of the padded image, mirror it left-right if flip[b], normalise.
    x: uint8 (B, H, W, 3); top/left: ints in [0, H + 2 padding - size]; returns float32 (B, 3, size, size).
    Any order is correct; :func:`crop_order` order is fast.
    """
    b, h, w, _ = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    if min(top.min(initial=0), left.min(initial=0)) < 0 or top.max(initial=0) > hp - size or left.max(initial=0) > wp - size:
        raise ValueError(f"crop offsets outside the padded {hp}x{wp} image for a {size} px crop")
    if padding:
        padded = x.new_zeros(b, 3, hp, wp)
        padded[:, :, padding : padding + h, padding : padding + w] = x.permute(0, 3, 1, 2)
    else:
        padded = x.permute(0, 3, 1, 2)  # (B, 3, H, W) view
    out = _empty_out(b, size, x.device, channels_last)
    key = (flip.astype(np.int64) * hp + top) * wp + left
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    stops = np.append(starts[1:], b)
    for start, stop in zip(starts.tolist(), stops.tolist()):
        t, l = int(top[start]), int(left[start])
        window = padded[start:stop, :, t : t + size, l : l + size]  # (n, 3, size, size) view
        if flip[start]:
            window = window.flip(3)
        torch.addcmul(shift, window, scale, out=out[start:stop])
    return out


def sample_resized_crops(
    rng: np.random.Generator,
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random-resized-crop boxes (top, left, h, w) as in torchvision, vectorised over the batch.

    Each sample tries ``attempts`` (area fraction, log-uniform aspect ratio) draws and keeps the first
    box that fits; if none fits, it falls back to the largest centred box with a ratio inside ``ratio``.
    """
    area = height * width
    target = area * rng.uniform(scale[0], scale[1], size=(n, attempts))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, attempts)))
    w = np.round(np.sqrt(target * aspect)).astype(np.int64)
    h = np.round(np.sqrt(target / aspect)).astype(np.int64)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)
    w, h = w[np.arange(n), first], h[np.arange(n), first]
    # fallback: centre crop of the whole image, clipped to the allowed aspect ratios
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    ok = fits.any(axis=1)
    w = np.where(ok, w, fw)
    h = np.where(ok, h, fh)
    u = rng.random((n, 2))
    top = np.where(ok, np.floor(u[:, 0] * (height - h + 1)), (height - h) // 2).astype(np.int64)
    left = np.where(ok, np.floor(u[:, 1] * (width - w + 1)), (width - w) // 2).astype(np.int64)
    return top, left, h, w


def resized_crop_flip(
    x: torch.Tensor,
    top: np.ndarray,
    left: np.ndarray,
    h: np.ndarray,
    w: np.ndarray,
    flip: np.ndarray,
    size: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """Crop box b of x[b], resize it to ``size`` x ``size`` (bilinear), mirror if flip[b], normalise.

    One ``grid_sample`` for the whole batch: each sample's box (and its flip, as a negative x scale) is an
    affine map from output to input coordinates. x: uint8 (B, H, W, 3) -> float32 (B, 3, size, size).
    """
    b, height, width, _ = x.shape
    dev = x.device
    sign = np.where(flip, -1.0, 1.0)
    theta = np.zeros((b, 2, 3), dtype=np.float32)
    # normalised coordinates (align_corners=False): pixel edge 0 -> -1, edge W -> +1
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(torch.from_numpy(theta).to(dev), [b, 3, size, size], align_corners=False)
    pixels = x.permute(0, 3, 1, 2).float()  # (B, 3, H, W), 0..255
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = torch.addcmul(shift, out, scale, out=out)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def cutout_(x: torch.Tensor, cy: np.ndarray, cx: np.ndarray, length: int) -> torch.Tensor:
    """Zero (= the mean colour, after normalisation) a length x length square centred at (cy[b], cx[b]).

    Squares may hang over the border (DeVries & Taylor, 2017). In place on float (B, 3, S, S).
    """
    size_h, size_w = x.shape[2], x.shape[3]
    dev = x.device
    y0 = torch.from_numpy(cy - length // 2).to(dev)[:, None]
    x0 = torch.from_numpy(cx - length // 2).to(dev)[:, None]
    rows = torch.arange(size_h, device=dev)[None, :]
    cols = torch.arange(size_w, device=dev)[None, :]
    in_rows = (rows >= y0) & (rows < y0 + length)  # (B, H)
    in_cols = (cols >= x0) & (cols < x0 + length)  # (B, W)
    return x.masked_fill_(in_rows[:, None, :, None] & in_cols[:, None, None, :], 0.0)


def mixup_(x: torch.Tensor, target: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each sample with the batch reversed: x = lam x + (1 - lam) x[::-1], same for soft targets."""
    partner = x.flip(0)
    x.mul_(lam).add_(partner, alpha=1.0 - lam)
    return x, target * lam + target.flip(0) * (1.0 - lam)


def cutmix_(
    x: torch.Tensor, target: torch.Tensor, lam: float, cy: int, cx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a box from the reversed batch (area about 1 - lam, centred at (cy, cx), clipped to the image);
    targets are mixed by the area actually pasted."""
    h, w = x.shape[2], x.shape[3]
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    if y1 > y0 and x1 > x0:
        x[:, :, y0:y1, x0:x1] = x[:, :, y0:y1, x0:x1].flip(0)  # flip copies: no aliasing
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, target * kept + target.flip(0) * (1.0 - kept)
