"""litezoo.data augmentation and BatchLoader: per-sample references, determinism, resume, sharding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from litezoo.data import BatchLoader, ImageDataset
from litezoo.data import augment

MEAN = (0.5, 0.4, 0.3)
STD = (0.25, 0.2, 0.3)


def make_ds(n=50, side=8, classes=5, image_size=None, seed=0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(
        images=rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % classes,
        classes=[f"c{i}" for i in range(classes)],
        mean=MEAN, std=STD, image_size=image_size or side, root=Path("mem"), split="train",
        source="test", cache_path=Path("none"),
    )


def reference_normalise(img_hwc: np.ndarray) -> np.ndarray:
    """(v/255 - mean) / std, as (3, H, W) float64."""
    x = img_hwc.astype(np.float64) / 255.0
    return ((x - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1)


def reference_crop_flip(img: np.ndarray, top: int, left: int, flip: bool, size: int, pad: int) -> np.ndarray:
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))  # zeros: black
    out = padded[top : top + size, left : left + size]
    return out[:, ::-1] if flip else out


# ---------------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("sort", [True, False])
def test_padded_crop_flip_matches_per_sample_reference(sort):
    rng = np.random.default_rng(1)
    b, side, pad, size = 24, 8, 3, 8
    images = rng.integers(0, 256, (b, side, side, 3), dtype=np.uint8)
    top = rng.integers(0, side + 2 * pad - size + 1, b)
    left = rng.integers(0, side + 2 * pad - size + 1, b)
    flip = rng.random(b) < 0.5
    order = augment.crop_order(top, left, flip) if sort else np.arange(b)
    images, top, left, flip = images[order], top[order], left[order], flip[order]
    scale, shift = augment.normalisation(MEAN, STD, torch.device("cpu"))
    for channels_last in (False, True):
        out = augment.padded_crop_flip(torch.from_numpy(images), top, left, flip, size, pad, scale, shift,
                                       channels_last=channels_last)
        assert out.shape == (b, 3, size, size) and out.dtype == torch.float32
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        for k in range(b):
            want = reference_normalise(reference_crop_flip(images[k], top[k], left[k], flip[k], size, pad))
            np.testing.assert_allclose(out[k].numpy(), want, atol=1e-5)


def test_padded_crop_smaller_than_image_and_bad_offsets():
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 10, 10, 3), dtype=np.uint8))
    scale, shift = augment.normalisation(MEAN, STD, torch.device("cpu"))
    top, left, flip = np.array([0, 2, 4]), np.array([4, 0, 1]), np.array([False, True, False])
    out = augment.padded_crop_flip(images, top, left, flip, 6, 0, scale, shift)
    for k in range(3):
        want = reference_normalise(reference_crop_flip(images[k].numpy(), top[k], left[k], flip[k], 6, 0))
        np.testing.assert_allclose(out[k].numpy(), want, atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        augment.padded_crop_flip(images, np.array([0, 0, 5]), left, flip, 6, 0, scale, shift)


def test_resized_crop_flip_geometry():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    scale, shift = augment.normalisation(MEAN, STD, torch.device("cpu"))
    x = torch.from_numpy(images)
    # a same-size box samples exactly at pixel centres: an exact crop (and its mirror image)
    out = augment.resized_crop_flip(x, np.array([2, 1]), np.array([3, 0]), np.array([4, 4]), np.array([4, 4]),
                                    np.array([False, True]), 4, scale, shift)
    np.testing.assert_allclose(out[0].numpy(), reference_normalise(images[0, 2:6, 3:7]), atol=1e-4)
    np.testing.assert_allclose(out[1].numpy(), reference_normalise(images[1, 1:5, 0:4, :][:, ::-1]), atol=1e-4)
    # whole image to half size: bilinear at align_corners=False = mean of each 2x2 block
    out = augment.resized_crop_flip(x, np.zeros(2, int), np.zeros(2, int), np.full(2, 8), np.full(2, 8),
                                    np.zeros(2, bool), 4, scale, shift)
    pooled = images.reshape(2, 4, 2, 4, 2, 3).astype(np.float64).mean((2, 4))
    for k in range(2):
        np.testing.assert_allclose(out[k].numpy(), reference_normalise(pooled[k]), atol=1e-4)


def test_sample_resized_crops_in_bounds_and_in_range():
    rng = np.random.default_rng(4)
    top, left, h, w = augment.sample_resized_crops(rng, 500, 40, 30, scale=(0.1, 1.0))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 30).all()
    area = h * w / (40 * 30)
    assert (area > 0.08).all() and (area <= 1.0).all() and area.std() > 0.1


def test_cutout_zeroes_the_square_clipped_at_borders():
    x = torch.ones(2, 3, 8, 8)
    augment.cutout_(x, np.array([0, 4]), np.array([7, 4]), 4)
    want = np.ones((2, 8, 8))
    want[0, 0:2, 5:8] = 0  # centre (0, 7): rows -2..1, cols 5..8, clipped
    want[1, 2:6, 2:6] = 0
    for c in range(3):
        np.testing.assert_array_equal(x[:, c].numpy(), want)


def test_mixup_and_cutmix_targets():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 4, 4).clone()
    y = F.one_hot(torch.tensor([0, 1, 2, 3]), 5).float()
    mx, my = augment.mixup_(x.clone(), y, 0.7)
    torch.testing.assert_close(mx[0, 0, 0, 0], torch.tensor(0.7 * 0 + 0.3 * 3))
    torch.testing.assert_close(my[0], torch.tensor([0.7, 0, 0, 0.3, 0]))
    cx, cy = augment.cutmix_(x.clone(), y, 0.75, 2, 2)  # cut side 4*sqrt(.25) = 2: rows/cols 1..2
    assert cx[0, 0, 1:3, 1:3].eq(3).all() and cx[0, 0, 0].eq(0).all()
    torch.testing.assert_close(cy[0], torch.tensor([0.75, 0, 0, 0.25, 0]))
    torch.testing.assert_close(cy.sum(1), torch.ones(4))


# ---------------------------------------------------------------------------------------------- loader


def collect(loader, limit=None):
    out = []
    for k, (x, y) in enumerate(loader):
        out.append((x.clone(), y.clone()))
        if limit is not None and k + 1 == limit:
            break
    return out


def test_train_batches_are_augmented_views_of_the_right_images():
    ds = make_ds(n=20, side=8)
    loader = BatchLoader(ds, 20, train=True, seed=5, crop_padding=0, flip=False)
    (x, y), = collect(loader)
    assert not loader.random_resized_crop  # 8 px: CIFAR-style
    # no padding, no flip: every output is exactly one image; labels must travel with it
    flat = torch.from_numpy(np.stack([reference_normalise(im) for im in ds.images])).float()
    for k in range(20):
        match = [i for i in range(20) if torch.allclose(x[k], flat[i], atol=1e-5)]
        assert len(match) == 1 and ds.labels[match[0]] == y[k]


def flipped_per_image(loader: BatchLoader, ds: ImageDataset) -> dict[int, bool]:
    """{dataset index: mirrored?} for one epoch of a loader without padding (labels identify the images)."""
    seen = {}
    for x, y in loader:
        for k, label in enumerate(y.tolist()):
            plain = torch.from_numpy(reference_normalise(ds.images[label])).float()
            if torch.allclose(x[k], plain, atol=1e-5):
                seen[label] = False
            else:
                assert torch.allclose(x[k], plain.flip(2), atol=1e-5)  # the mirror, nothing else
                seen[label] = True
    return seen


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    n = 40
    ds = make_ds(n=n, side=6, classes=n)  # label = index: each output names its image
    loader = BatchLoader(ds, 8, train=True, seed=7, crop_padding=0, flip="alternate")
    epochs = [flipped_per_image(loader, ds) for _ in range(3)]
    assert all(len(e) == n for e in epochs)
    assert 10 <= sum(epochs[0].values()) <= 30  # a random half (binomial(40, 1/2))
    assert all(epochs[1][i] != epochs[0][i] for i in range(n))  # odd epochs mirror the other half
    assert epochs[2] == epochs[0]
    # ranks agree with the single-process decision (coins per image, not per rank); another seed, other coins
    for rank in range(2):
        shard = BatchLoader(ds, 4, train=True, seed=7, crop_padding=0, flip="alternate", rank=rank, world_size=2)
        assert all(epochs[0][i] == f for i, f in flipped_per_image(shard, ds).items())
    other = BatchLoader(ds, 8, train=True, seed=8, crop_padding=0, flip="alternate")
    assert flipped_per_image(other, ds) != epochs[0]
    # random flip, for contrast, is not complementary from one epoch to the next
    rand = BatchLoader(ds, 8, train=True, seed=7, crop_padding=0, flip=True)
    a, b = flipped_per_image(rand, ds), flipped_per_image(rand, ds)
    assert any(a[i] == b[i] for i in range(n))
    with pytest.raises(ValueError, match="flip must be"):
        BatchLoader(ds, 8, train=True, flip="sometimes")


def test_eval_loader_in_order_no_augmentation():
    ds = make_ds(n=10, side=8)
    batches = collect(BatchLoader(ds, 4, train=False, flip=True, cutout=4))
    assert [len(y) for _, y in batches] == [4, 4, 2]  # drop_last defaults to False for eval
    x = torch.cat([b[0] for b in batches])
    want = np.stack([reference_normalise(im) for im in ds.images])
    np.testing.assert_allclose(x.numpy(), want, atol=1e-5)
    assert torch.cat([b[1] for b in batches]).tolist() == ds.labels.tolist()


def test_determinism_epochs_and_seeds():
    ds = make_ds()
    kw = dict(train=True, seed=3, cutout=3, mixup_alpha=0.4, cutmix_alpha=1.0)
    a = collect(BatchLoader(ds, 8, **kw))
    b = collect(BatchLoader(ds, 8, **kw))
    assert len(a) == 50 // 8
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a[0][1].shape == (8, 5) and torch.allclose(a[0][1].sum(1), torch.ones(8))  # soft targets
    loader = BatchLoader(ds, 8, train=True, seed=3)
    assert not np.array_equal(loader.rank_indices(0), loader.rank_indices(1))
    assert not np.array_equal(loader.rank_indices(0), BatchLoader(ds, 8, train=True, seed=4).rank_indices(0))
    collect(loader)
    assert loader.epoch == 1  # a finished epoch moves on, so the next pass reshuffles


def test_global_rng_state_does_not_matter():
    ds = make_ds()
    torch.manual_seed(0)
    np.random.seed(0)
    a = collect(BatchLoader(ds, 8, train=True, seed=1, cutout=2))
    torch.manual_seed(123)
    np.random.seed(123)
    torch.rand(100)
    b = collect(BatchLoader(ds, 8, train=True, seed=1, cutout=2))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))


@pytest.mark.parametrize("rrc", [False, True])
def test_exact_mid_epoch_resume(rrc):
    ds = make_ds(n=60, side=12, image_size=12 if not rrc else 8)
    kw = dict(train=True, seed=11, cutout=4, mixup_alpha=0.3, cutmix_alpha=0.5, random_resized_crop=rrc,
              flip="alternate" if rrc else True)
    reference = BatchLoader(ds, 8, **kw)
    runs = {}
    for epoch in range(2):
        reference.set_epoch(epoch)
        runs[epoch] = collect(reference)
    first = BatchLoader(ds, 8, **kw)
    first.set_epoch(1)
    collect(first, limit=3)  # "crash" after 3 batches of epoch 1
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batch_index"] == 3 and state["seed"] == 11
    resumed = BatchLoader(ds, 8, **dict(kw, seed=999))  # the saved seed wins
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # what a trainer's epoch loop does: must not rewind
    rest = collect(resumed)
    assert len(rest) == len(runs[1]) - 3
    for (xa, ya), (xb, yb) in zip(runs[1][3:], rest):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert (resumed.epoch, resumed.state_dict()["batch_index"]) == (2, 0)  # a finished epoch moves on
    resumed.set_epoch(1)  # another epoch than the current one: from its start
    assert (resumed.epoch, resumed.state_dict()["batch_index"]) == (1, 0)
    assert torch.equal(collect(resumed, limit=1)[0][0], runs[1][0][0])
    other = BatchLoader(ds, 4, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        other.load_state_dict(state)


def test_rank_shards_disjoint_and_covering():
    ds = make_ds(n=53)
    w = 3
    shards = [BatchLoader(ds, 4, train=True, seed=2, rank=r, world_size=w).rank_indices(0) for r in range(w)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 53 // 3  # drop_last: tail dropped
    union = np.concatenate(shards)
    assert len(set(union.tolist())) == len(union) == 51
    loaders = [BatchLoader(ds, 4, train=True, seed=2, rank=r, world_size=w, drop_last=False) for r in range(w)]
    union = np.concatenate([ld.rank_indices(0) for ld in loaders])
    assert set(union.tolist()) == set(range(53)) and len(union) == 54  # padded by wrapping: 1 repeat
    assert len({len(ld) for ld in loaders}) == 1  # equal steps on every rank
    evals = [BatchLoader(ds, 4, train=False, rank=r, world_size=w) for r in range(w)]
    seen = np.concatenate([ld.rank_indices() for ld in evals])
    assert sorted(seen.tolist()) == list(range(53))  # every image exactly once, no padding
    ys = torch.cat([y for ld in evals for _, y in ld])
    assert ys.tolist() == ds.labels.tolist()
    # augmentation differs per rank even for the same batch index
    a = BatchLoader(ds, 4, train=True, seed=2, rank=0, world_size=2).make_batch(np.arange(4), 0)[0]
    b = BatchLoader(ds, 4, train=True, seed=2, rank=1, world_size=2).make_batch(np.arange(4), 0)[0]
    assert not torch.equal(a, b)


def test_rank_defaults_from_torch_distributed(monkeypatch):
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    loader = BatchLoader(make_ds(n=40), 2, train=True)
    assert (loader.rank, loader.world_size) == (1, 4) and len(loader) == 5


def test_sizes_and_channels_last():
    ds = make_ds(n=6, side=8, image_size=16)  # stored smaller than the model's size: upsampled
    for train in (True, False):
        x, _ = next(iter(BatchLoader(ds, 3, train=train, channels_last=True)))
        assert x.shape == (3, 3, 16, 16) and x.is_contiguous(memory_format=torch.channels_last)
    big = make_ds(n=6, side=12, image_size=8)  # stored larger (train cache of photos): centre crop for eval
    x, _ = next(iter(BatchLoader(big, 6, train=False)))
    np.testing.assert_allclose(x[0].numpy(), reference_normalise(big.images[0, 2:10, 2:10]), atol=1e-5)
    with pytest.raises(ValueError, match="larger than"):
        BatchLoader(ds, 7, train=True)
    with pytest.raises(ValueError, match="num_classes"):
        BatchLoader(ds, 2, train=True, num_classes=3)
