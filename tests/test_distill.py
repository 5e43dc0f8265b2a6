"""litezoo.distill: the distillation target against hand-computed values, the teacher's checks and its purity."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from test_train import make_image_folder, tiny_config

import litezoo
from litezoo.checkpoint import export_safetensors, load_weights
from litezoo.config import resolve
from litezoo.data import augment, open_dataset
from litezoo.data.loader import BatchLoader, BatchView
from litezoo.distill import (Teacher, TeacherTable, crop_grid, distilled_batches, grid_cell, soft_targets,
                             teacher_table_key)
from litezoo.errors import InputError
from litezoo.progress import Progress
from litezoo.train import TEACHER_TABLE, fit

CPU = torch.device("cpu")


def test_soft_targets_hand_computed():
    y = torch.tensor([0, 2])
    teacher = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    want = torch.tensor([[0.6 + 0.4 * 0.5, 0.4 * 0.25, 0.4 * 0.25], [0.4 * 0.1, 0.4 * 0.2, 0.6 + 0.4 * 0.7]])
    assert torch.allclose(soft_targets(y, teacher, 0.4), want)
    assert torch.equal(soft_targets(y, teacher, 0.0), F.one_hot(y, 3).float())
    assert torch.equal(soft_targets(y, teacher, 1.0), teacher)
    mixed = torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.0, 1.0]])  # soft labels (mixup) are mixed as they are
    assert torch.allclose(soft_targets(mixed, teacher, 0.5), 0.5 * mixed + 0.5 * teacher)


def test_cross_entropy_of_the_target_is_the_distillation_loss():
    """CE(student, target) = (1 - a) CE(student, y) + a CE(student, teacher): the loss the trainer computes."""
    torch.manual_seed(0)
    logits, y, teacher = torch.randn(6, 5), torch.randint(0, 5, (6,)), torch.randn(6, 5).softmax(-1)
    a = 0.7
    got = F.cross_entropy(logits, soft_targets(y, teacher, a))
    want = (1 - a) * F.cross_entropy(logits, y) + a * -(teacher * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(got, want, atol=1e-6)


class Dropper(nn.Module):
    num_classes = 4

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):  # (N, 3, 2, 2) -> (N, 4)
        return self.fc(self.drop(x.flatten(1)))


def test_teacher_probabilities_temperature_and_purity():
    torch.manual_seed(0)
    net = Dropper()
    x = torch.randn(8, 3, 2, 2)
    t1 = Teacher(net, CPU, temperature=1.0, amp="off")
    t4 = Teacher(net, CPU, temperature=4.0, amp="off")
    rng = torch.get_rng_state()
    p1, p4 = t1.probs(x), t4.probs(x)
    assert torch.equal(torch.get_rng_state(), rng)  # eval mode: the dropout draws nothing
    assert not p1.requires_grad and all(not p.requires_grad for p in net.parameters())
    assert torch.allclose(p1.sum(-1), torch.ones(8))
    logits = net.fc(x.flatten(1))
    assert torch.allclose(p4, (logits / 4).softmax(-1), atol=1e-6)
    entropy = lambda p: -(p * p.log()).sum(-1)  # noqa: E731
    assert bool((entropy(p4) > entropy(p1)).all())  # a higher temperature softens every row
    with pytest.raises(InputError, match="distill_temperature"):
        Teacher(net, CPU, temperature=0.0)


def test_distilled_batches_keep_x_and_replace_y():
    net = Dropper()
    teacher = Teacher(net, CPU, amp="off")
    batches = [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])) for _ in range(3)]
    out = list(distilled_batches(batches, teacher, 0.5))
    assert len(out) == 3
    for (x, y), (x2, t) in zip(batches, out):
        assert x2 is x and t.shape == (4, 4)
        assert torch.allclose(t, 0.5 * F.one_hot(y, 4) + 0.5 * teacher.probs(x))
    with pytest.raises(InputError, match="distill_alpha"):
        list(distilled_batches(batches, teacher, 1.5))


def test_teacher_from_run_checks_the_task(tmp_path):
    model = litezoo.create_model("mobilenet_v1_x0_25_cifar", num_classes=3)
    meta = {"model_name": "mobilenet_v1_x0_25_cifar", "num_classes": 3, "in_chans": 3, "image_size": 32,
            "classes": ["a", "b", "c"], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "ema": False}  # fmt: skip
    path = export_safetensors(model.state_dict(), tmp_path / "model.safetensors", meta)
    task = dict(classes=["a", "b", "c"], image_size=32, mean=[0.5] * 3, std=[0.25] * 3)
    teacher = Teacher.from_run(path, CPU, **task, amp="off")
    x = torch.randn(2, 3, 32, 32)
    assert teacher.probs(x).shape == (2, 3)
    assert "mobilenet_v1_x0_25_cifar" in teacher.name
    for key, value, message in (("classes", ["a", "c", "b"], "classes"), ("image_size", 64, "image_size"),
                                ("mean", [0.4] * 3, "mean")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            Teacher.from_run(path, CPU, **{**task, key: value})
    with pytest.raises(InputError, match="does not exist"):
        Teacher.from_run(tmp_path / "nope", CPU, **task)


# ---------------------------------------------------------------------------------------------------------------
# In the trainer: train.distill_from and amp=auto (litezoo.autotune) end to end, on a tiny image folder


class Notes(Progress):
    def __init__(self):
        super().__init__(quiet=True)
        self.lines = []

    def note(self, text):
        self.lines.append(text)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    data = make_image_folder(tmp_path_factory.mktemp("distill") / "data")
    run = data.parent / "teacher"
    fit(tiny_config(data, **{"train.epochs": 1}), run, progress=Progress(quiet=True))
    return data, run


def student(data, run_dir, progress=None, **over):
    cfg = tiny_config(data, **{"train.epochs": 1, "model.name": "mobilenet_v1_x0_25_cifar", **over})
    fit(cfg, run_dir, progress=progress or Progress(quiet=True))
    state, _ = load_weights(run_dir, "raw")
    return state


def test_distillation_changes_only_the_targets(teacher_run, tmp_path):
    data, teacher = teacher_run
    plain = student(data, tmp_path / "plain")
    notes = Notes()
    zero = student(data, tmp_path / "zero", notes, **{"train.distill_from": str(teacher), "train.distill_alpha": 0.0})
    full = student(data, tmp_path / "full", **{"train.distill_from": str(teacher), "train.distill_alpha": 1.0})
    assert any(line.startswith("distilling from shufflenet_v2_x0_5_cifar") for line in notes.lines)
    # alpha 0: the one-hot target, the same initial weights and batches: the plain run's weights (to rounding);
    # the teacher's load and forward drew no random numbers
    assert all(torch.allclose(plain[k].float(), zero[k].float(), atol=1e-5) for k in plain)
    # alpha 1: the teacher's probabilities alone, another result
    assert not all(torch.allclose(plain[k].float(), full[k].float(), atol=1e-5) for k in plain)


def test_under_progressive_resizing_the_teacher_sees_the_students_view(teacher_run, tmp_path, monkeypatch):
    data, teacher = teacher_run
    seen = {"teacher": [], "student": []}
    probs = Teacher.probs

    def spy_probs(self, x):
        seen["teacher"].append(x.shape[-1])
        return probs(self, x)

    monkeypatch.setattr(Teacher, "probs", spy_probs)
    # 4 epochs growing 16 -> 32 px over the first half: 16, 24, 32, 32 px for the student
    student_cfg = {"train.distill_from": str(teacher), "train.epochs": 4, "data.progressive_start_size": 16,
                   "data.progressive_epochs": 0.5}  # fmt: skip
    cfg = tiny_config(data, **{"model.name": "mobilenet_v1_x0_25_cifar", **student_cfg})
    model = litezoo.create_model(cfg.model.name, num_classes=4)
    forward = type(model).forward

    def spy_forward(self, x):
        if self.training:
            seen["student"].append(x.shape[-1])
        return forward(self, x)

    monkeypatch.setattr(type(model), "forward", spy_forward)
    fit(cfg, tmp_path / "prog", progress=Progress(quiet=True))
    steps = len(seen["student"]) // 4  # 32 training images / batch 8 per epoch
    assert seen["student"] == [16] * steps + [24] * steps + [32] * 2 * steps
    assert seen["teacher"] == seen["student"]  # the teacher judged each batch at the size the student saw it


def test_distillation_from_a_missing_run_is_an_input_error(teacher_run, tmp_path):
    data, _ = teacher_run
    with pytest.raises(InputError, match="distill_from"):
        student(data, tmp_path / "s", **{"train.distill_from": str(tmp_path / "nope")})


def test_amp_auto_measures_in_the_trainer_and_caches_beside_the_data(teacher_run, tmp_path, monkeypatch):
    import litezoo.autotune as at

    monkeypatch.setattr(at, "machine_contended", lambda: None)  # cached whatever else runs on the test machine
    data, _ = teacher_run
    notes = Notes()
    student(data, tmp_path / "auto", notes, **{"train.amp": "auto"})
    line = next(line for line in notes.lines if "params" in line)
    assert "amp auto: measured (batch 8)" in line
    chosen = re.search(r"-> (bf16|fp32), (channels_last|NCHW)$", line)
    saved = resolve(tmp_path / "auto" / "config.yaml")  # the config as run holds the choice: resume measures nothing
    assert saved.train.amp == ("bf16" if chosen.group(1) == "bf16" else "off")
    assert saved.train.channels_last is (chosen.group(2) == "channels_last")
    cache = json.loads((data.parent / "cache" / "autotune.json").read_text())
    assert any(e["fields"]["model"] == "mobilenet_v1_x0_25_cifar" for e in cache["entries"].values())
    notes2 = Notes()
    student(data, tmp_path / "auto2", notes2, **{"train.amp": "auto"})
    assert "amp auto: cached in" in next(line for line in notes2.lines if "params" in line)


# ---------------------------------------------------------------------------------------------------------------
# train.distill_cache: the teacher's answers for every image, flip and size, computed once before training


def test_loader_views_name_each_rows_image_and_flip(teacher_run):
    data, _ = teacher_run
    ds = open_dataset(data, "train", image_size=32, cache_dir=data.parent / "cache")
    plain = BatchLoader(ds, 8, train=False, rank=0, world_size=1)
    whole = {int(i): x for xb, _, v in plain.with_views() for i, x in zip(v.indices, xb)}  # un-augmented images
    loader = BatchLoader(ds, 8, train=True, seed=3, rank=0, world_size=1, crop_padding=0, flip=True)
    flips = 0
    for x, y, view in loader.with_views():
        assert torch.equal(y, torch.from_numpy(ds.labels[view.indices]))
        for row, i, f in zip(x, view.indices, view.flips):
            assert torch.equal(row, whole[int(i)].flip(-1) if f else whole[int(i)])
            flips += int(f)
    assert 0 < flips < len(ds)  # both kinds were drawn
    mixing = BatchLoader(ds, 8, train=True, seed=3, rank=0, world_size=1, mixup_alpha=0.2, num_classes=4)
    assert all(view is None for _, _, view in mixing.with_views())  # a blend is no single image


def test_crop_grid_pins_the_positions_and_their_cells():
    # CIFAR's 4 px padding: crop corners 0..8 in the padded image, 4 = the uncropped image
    assert crop_grid(8, 1).tolist() == [4]
    assert crop_grid(8, 3).tolist() == [1, 4, 7]  # shifts of -3, 0, +3 px
    assert crop_grid(8, 9).tolist() == list(range(9))
    assert grid_cell(np.arange(9), 8, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # every view within 1 px
    assert grid_cell(np.arange(9), 8, 1).tolist() == [0] * 9
    assert grid_cell(np.arange(9), 8, 9).tolist() == list(range(9))
    with pytest.raises(InputError, match="distill_cache_grid must be between 1 and 9"):
        crop_grid(8, 10)


def test_cached_teacher_table_holds_the_teachers_answer_per_image_flip_crop_and_size(teacher_run, tmp_path,
                                                                                      monkeypatch):  # fmt: skip
    data, teacher = teacher_run
    built = {}
    build = TeacherTable.build.__func__

    def spy_build(cls, teacher_, *args, **kw):
        built["table"] = table = build(cls, teacher_, *args, **kw)
        built["teacher"] = teacher_
        return table

    monkeypatch.setattr(TeacherTable, "build", classmethod(spy_build))
    calls = []
    logits = Teacher.logits
    monkeypatch.setattr(Teacher, "logits", lambda self, x: calls.append(x.shape) or logits(self, x))
    notes = Notes()
    cfg = {"train.distill_from": str(teacher), "train.distill_cache": True, "train.epochs": 3,
           "train.distill_cache_grid": 3, "data.progressive_start_size": 16,
           "data.progressive_epochs": 0.5}  # fmt: skip
    student(data, tmp_path / "cached", notes, **cfg)
    table = built["table"]
    assert sorted(table.logits) == [16, 24, 32]  # the sizes of the run's epochs (16, 24, 32 px)
    assert table.grid.tolist() == [1, 4, 7] and table.logits[24].shape == (2, 3, 3, 32, 4)
    # the teacher ran before training only: 32 images in batches of 16, x 2 flips x 9 crops x 3 sizes
    assert len(calls) == 2 * 2 * 9 * 3 and all(s[0] == 16 for s in calls)
    assert any(line.startswith("teacher table: 1,728 views") for line in notes.lines)
    # an entry is the teacher's answer on the training view with that crop (mirrored for [1]) scaled to the size
    ds = open_dataset(data, "train", image_size=32, cache_dir=data.parent / "cache")
    loader = BatchLoader(ds, 4, train=True, rank=0, world_size=1, mean=ds.mean, std=ds.std)
    idx, ones = np.array([3, 0, 7, 5]), np.ones(4, dtype=np.int64)
    x = loader.crop_views(idx, ones * 7, ones * 1, ones.astype(bool))  # shifted 3 px up and 3 px right, mirrored
    want = logits(built["teacher"], augment.resize_batch(x, 24))
    assert torch.allclose(table.logits[24][1, 2, 0, torch.from_numpy(idx)], want, atol=1e-4)
    # a view is looked up at its crop's cell: tops 6 and 8 are in the cell of 7, left 2 in the cell of 1;
    # an uncropped (evaluation) view at the centre
    rows = BatchView(idx, np.array([True, True, False, True]), np.array([6, 8, 4, 7]), np.array([2, 0, 5, 1]))
    got = table.probs(rows, 24)
    assert torch.allclose(got[0], F.softmax(want[0], -1), atol=1e-5)
    assert torch.allclose(got[1], F.softmax(want[1], -1), atol=1e-5)
    assert torch.allclose(got[2], F.softmax(table.logits[24][0, 1, 1, 7], -1))
    centre = table.probs(BatchView(idx, np.zeros(4, dtype=bool)), 32)
    assert torch.allclose(centre, F.softmax(table.logits[32][0, 1, 1, torch.from_numpy(idx)], -1))


def test_cached_teacher_without_crop_or_flip_trains_as_the_live_teacher(teacher_run, tmp_path):
    data, teacher = teacher_run
    exact = {"train.distill_from": str(teacher), "train.distill_alpha": 1.0, "data.crop_padding": 0,
             "data.flip": False}  # every view is the whole image: the table's entry is the live teacher's answer
    live = student(data, tmp_path / "live", **exact)
    cached = student(data, tmp_path / "cached", **exact, **{"train.distill_cache": True})
    plain = student(data, tmp_path / "plain")
    assert all(torch.allclose(live[k].float(), cached[k].float(), atol=1e-4) for k in live)
    assert not all(torch.allclose(plain[k].float(), cached[k].float(), atol=1e-4) for k in plain)


def test_cached_teacher_with_every_crop_position_trains_as_the_live_teacher(teacher_run, tmp_path):
    """A table over all 9 x 9 crop positions of a 4 px padding holds the live teacher's answer for every view."""
    data, teacher = teacher_run
    exact = {"train.distill_from": str(teacher), "train.distill_alpha": 1.0, "data.crop_padding": 4,
             "data.flip": True}  # fmt: skip
    live = student(data, tmp_path / "live", **exact)
    cached = student(data, tmp_path / "cached", **exact, **{"train.distill_cache": True, "train.distill_cache_grid": 9})
    centre = student(data, tmp_path / "centre", **exact, **{"train.distill_cache": True})
    assert all(torch.allclose(live[k].float(), cached[k].float(), atol=1e-4) for k in live)
    assert not all(torch.allclose(live[k].float(), centre[k].float(), atol=1e-4) for k in live)  # 1 cell: inexact


def test_shared_teacher_table_counts_its_build_time_in_the_run_that_built_it(teacher_run, tmp_path, monkeypatch):
    data, teacher = teacher_run
    calls = []
    logits = Teacher.logits
    monkeypatch.setattr(Teacher, "logits", lambda self, x: calls.append(x.shape) or logits(self, x))
    shared = tmp_path / "tables" / "t.safetensors"
    options = {"model.name": "mobilenet_v1_x0_25_cifar", "train.distill_from": str(teacher), "train.epochs": 1,
               "train.distill_cache": True, "train.distill_table": str(shared)}  # fmt: skip
    first, second = Notes(), Notes()
    fit(tiny_config(data, **options), tmp_path / "a", progress=first)
    assert shared.is_file() and not (tmp_path / "a" / TEACHER_TABLE).exists() and len(calls) == 2 * 2
    assert any("counted as training time; kept in" in line for line in first.lines)
    with safe_open(str(shared), framework="pt") as f:
        meta = f.metadata()
    assert meta["built_by"] == str((tmp_path / "a").resolve())
    train_s = lambda run: json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["train_time_s"]  # noqa: E731
    assert train_s(tmp_path / "a") >= float(meta["build_time_s"]) > 0
    # Another run reads it and does not count its build time (made 1000 s here, so that it would show).
    table = TeacherTable.load(shared, meta["key"], 1.0)
    table.build_time_s = 1000.0
    table.save(shared, meta["key"])
    calls.clear()
    fit(tiny_config(data, **options), tmp_path / "b", progress=second)
    assert calls == []  # read, not built
    assert any("not counted in this run" in line and str((tmp_path / "a").resolve()) in line for line in second.lines)
    assert train_s(tmp_path / "b") < 1000.0
    # A run of other sizes naming the same file: an error naming it, and the file is left as it was.
    before = shared.read_bytes()
    with pytest.raises(InputError, match="distill_table: .* made for another teacher"):
        fit(tiny_config(data, **options, **{"data.progressive_start_size": 24, "data.progressive_epochs": 0.5}),
            tmp_path / "c", progress=Progress(quiet=True))  # fmt: skip
    assert shared.read_bytes() == before


def test_cached_teacher_refuses_views_it_cannot_name(teacher_run, tmp_path):
    data, teacher = teacher_run
    with pytest.raises(InputError, match="distill_cache"):
        student(data, tmp_path / "mix", **{"train.distill_from": str(teacher), "train.distill_cache": True,
                                           "data.mixup_alpha": 0.2})  # fmt: skip


def test_teacher_table_file_round_trip(tmp_path):
    table = TeacherTable({24: torch.randn(2, 3, 3, 5, 3), 32: torch.randn(2, 3, 3, 5, 3)}, 8, crop_grid(8, 3), 2.0,
                         "t", build_time_s=12.5, built_by="/runs/a")  # fmt: skip
    path = tmp_path / "table.safetensors"
    assert table.save(path, "k1") == path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    back = TeacherTable.load(path, "k1", 2.0)
    assert sorted(back.logits) == [24, 32] and back.build_time_s == 12.5 and back.temperature == 2.0
    assert back.span == 8 and back.grid.tolist() == [1, 4, 7] and back.built_by == "/runs/a"
    assert all(torch.equal(back.logits[s], table.logits[s]) for s in (24, 32))
    assert TeacherTable.load(path, "another key", 2.0) is None  # made for another teacher, data or sizes
    assert TeacherTable.load(tmp_path / "none.safetensors", "k1", 2.0) is None
    path.write_bytes(path.read_bytes()[:50])  # a damaged file is no table: it is built again
    assert TeacherTable.load(path, "k1", 2.0) is None


def test_teacher_table_key_follows_teacher_data_and_sizes():
    model = litezoo.create_model("mobilenet_v1_x0_25_cifar", num_classes=4)
    teacher = Teacher(model, CPU, amp="off")
    images = torch.randint(0, 255, (6, 8, 8, 3), dtype=torch.uint8).numpy()
    labels = torch.tensor([0, 1, 2, 3, 0, 1]).numpy()
    key = teacher_table_key(teacher, images, labels, [24, 32, 32])
    assert key == teacher_table_key(teacher, images.copy(), labels, [32, 24])  # sizes as a set
    assert key != teacher_table_key(teacher, images, labels, [32])
    assert key != teacher_table_key(teacher, images[::-1], labels, [24, 32])  # another order of images
    assert key != teacher_table_key(teacher, images, labels[::-1], [24, 32])
    assert key != teacher_table_key(teacher, images, labels, [24, 32], 8, 3)  # another crop grid
    assert teacher_table_key(teacher, images, labels, [24, 32], 8, 3) != teacher_table_key(
        teacher, images, labels, [24, 32], 8, 9)
    moved = Teacher(model, CPU, amp="off", name="the same weights read from another folder")
    assert key == teacher_table_key(moved, images, labels, [24, 32])
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert key != teacher_table_key(teacher, images, labels, [24, 32])  # another teacher


def test_teacher_table_is_kept_in_the_run_folder_and_read_on_resume(teacher_run, tmp_path, monkeypatch):
    data, teacher = teacher_run
    calls = []
    logits = Teacher.logits
    monkeypatch.setattr(Teacher, "logits", lambda self, x: calls.append(x.shape) or logits(self, x))
    options = {"model.name": "mobilenet_v1_x0_25_cifar", "train.distill_from": str(teacher),
               "train.distill_cache": True, "train.epochs": 2}  # fmt: skip
    whole = tmp_path / "whole"
    fit(tiny_config(data, **options), whole, progress=Progress(quiet=True))
    assert (whole / TEACHER_TABLE).is_file() and len(calls) == 2 * 2  # 32 images in batches of 16, x 2 flips

    # Stopped after epoch 1 (a callback), then resumed: the table is read, the teacher does not run again, and
    # the run ends where the uninterrupted one did.
    part = tmp_path / "part"
    fit(tiny_config(data, **options), part, progress=Progress(quiet=True), callbacks=[lambda row: True])
    calls.clear()
    notes = Notes()
    fit(tiny_config(data, **options), part, resume=True, progress=notes)
    assert calls == []
    assert any(" read from " in line and "counted as training time once" in line for line in notes.lines)
    a, _ = load_weights(whole, "raw")
    b, _ = load_weights(part, "raw")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # A table of another run setting (here other sizes) is not used: built again and replaced.
    calls.clear()
    other = tmp_path / "other"
    other.mkdir()
    (other / TEACHER_TABLE).write_bytes((whole / TEACHER_TABLE).read_bytes())
    fit(tiny_config(data, **options, **{"data.progressive_start_size": 24, "data.progressive_epochs": 0.5}), other,
        progress=Progress(quiet=True))  # fmt: skip
    assert len(calls) == 2 * 2 * 2  # two sizes now
    with safe_open(str(other / TEACHER_TABLE), framework="pt") as f:
        assert sorted(f.keys()) == ["logits_24", "logits_32"]
