"""evaluate(): exact counts on a model with known outputs, flip and translate TTA, per-class accuracy, confusion PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from litezoo.evaluate import Ensemble, EvalResult, evaluate, format_report, save_confusion_png, shift_reflect, tta_logits


class Lookup(nn.Module):
    """Logits read from the image: pixel [0, 0, 0] picks a row of ``table`` (a fake classifier)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)

    def forward(self, x):
        return self.table[x[:, 0, 0, 0].long()]


def _batches(codes, labels, batch=3):
    x = torch.zeros(len(codes), 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor(codes, dtype=torch.float32)
    y = torch.tensor(labels)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(codes), batch)]


def test_counts_top1_top5_confusion():
    k = 6
    # code c ranks class c first, class (c + 1) % k second, and so on cyclically.
    table = torch.stack([torch.roll(torch.arange(k, 0, -1, dtype=torch.float32), c) for c in range(k)])
    model = Lookup(table)
    codes = [0, 1, 2, 2, 3, 5, 5, 4]
    labels = [0, 1, 3, 2, 3, 0, 5, 4]  # wrong at index 2 (pred 2, true 3) and 5 (pred 5, true 0)
    res = evaluate(model, _batches(codes, labels), num_classes=k)
    assert res.num_samples == 8 and res.top1 == pytest.approx(75.0)
    # top-5 misses when the true class is ranked 6th: code 2 ranks class 3 second (hit); code 5 ranks 0 second (hit)
    assert res.top5 == pytest.approx(100.0)
    expected = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(labels, codes):
        expected[t, p] += 1
    assert (res.confusion == expected).all()
    acc = res.per_class_accuracy
    assert acc[0] == pytest.approx(50.0) and acc[3] == pytest.approx(50.0) and acc[1] == 100.0
    loss = nn.functional.cross_entropy(table[torch.tensor(codes)], torch.tensor(labels)).item()
    assert res.loss == pytest.approx(loss, rel=1e-6)


def test_top5_counts_a_miss():
    k = 7
    table = torch.arange(k, 0, -1, dtype=torch.float32)[None]  # always ranks 0,1,2,...,6
    res = evaluate(Lookup(table), _batches([0, 0], [5, 6]), num_classes=k)
    assert res.top1 == 0.0 and res.top5 == 0.0  # classes 5 and 6 are ranked 6th and 7th


def test_flip_tta_averages_mirrored_logits():
    class LeftRight(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):  # class 0 if the left column is brighter, class 1 otherwise
            left, right = x[..., 0].mean((1, 2)), x[..., -1].mean((1, 2))
            return torch.stack([left - right + 0.1, right - left], dim=1)

    x = torch.zeros(2, 1, 2, 2)
    x[0, ..., 0] = 1.0  # brighter left
    x[1, ..., 1] = 1.0  # brighter right
    y = torch.tensor([0, 1])
    plain = evaluate(LeftRight(), [(x, y)], num_classes=2)
    tta = evaluate(LeftRight(), [(x, y)], num_classes=2, tta_flip=True)
    assert plain.top1 == 100.0
    assert tta.top1 == 50.0  # mirrored logits cancel; the +0.1 bias decides class 0 for both


def _reflect(k: int, n: int) -> int:
    """Index k of a row of n pixels continued by reflection without repeating the edge (... 2 1 [0 1 ... n-1] n-2 ...)."""
    return -k if k < 0 else (2 * (n - 1) - k if k > n - 1 else k)


@pytest.mark.parametrize("dy,dx", [(1, 1), (-1, -1), (2, -1), (0, 0)])
def test_shift_reflect_against_a_loop(dy, dx):
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    got = shift_reflect(x, dy, dx)
    expected = torch.empty_like(x)
    for i in range(5):
        for j in range(6):
            expected[..., i, j] = x[..., _reflect(i - dy, 5), _reflect(j - dx, 6)]  # pixel (i, j) shows (i-dy, j-dx)
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="reflect"):
        shift_reflect(x, 5, 0)


def test_translate_tta_weights_views_like_airbench():
    # The "logits" are the image itself, so every view's weight can be read off.
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))  # evaluate() reads the device off a parameter

        def forward(self, x):
            return x.flatten(1)

    x = torch.randn(3, 1, 4, 4)
    plain = x.flatten(1)
    shifted = (shift_reflect(x, -1, -1).flatten(1) + shift_reflect(x, 1, 1).flatten(1)) / 2
    torch.testing.assert_close(tta_logits(Flat(), x, translate=1), (plain + shifted) / 2)
    mirror = lambda v: (v.flatten(1) + v.flip(3).flatten(1)) / 2  # noqa: E731
    both = (mirror(x) + (mirror(shift_reflect(x, -1, -1)) + mirror(shift_reflect(x, 1, 1))) / 2) / 2
    torch.testing.assert_close(tta_logits(Flat(), x, flip=True, translate=1), both)
    torch.testing.assert_close(tta_logits(Flat(), x), plain)

    # Through evaluate(): a model that reads one corner pixel changes its mind under translate TTA.
    class Corner(Flat):
        def forward(self, x):  # class 1 if pixel (0, 0) is bright
            v = x[:, 0, 0, 0]
            return torch.stack([0.6 - v, v - 0.6], dim=1)

    img = torch.zeros(1, 1, 4, 4)
    img[0, 0, 0, 0] = 1.0  # plain view: (-0.4, 0.4); both shifted views see pixel (1, 1) there: (0.6, -0.6)
    y = torch.tensor([1])
    assert evaluate(Corner(), [(img, y)], num_classes=2).top1 == 100.0
    assert evaluate(Corner(), [(img, y)], num_classes=2, tta_translate=1).top1 == 0.0


def test_ensemble_averages_probabilities_not_logits():
    # Member A is sure of class 0 (logit gap 10), members B and C mildly prefer class 1 (gap 1).
    a = Lookup(torch.tensor([[10.0, 0.0]]))
    b = Lookup(torch.tensor([[0.0, 1.0]]))
    c = Lookup(torch.tensor([[0.0, 1.0]]))
    x, y = _batches([0], [1])[0]
    out = Ensemble([a, b, c])(x)  # (1, 2)
    probs = [torch.softmax(m.table[0], 0) for m in (a, b, c)]
    expected = torch.log(sum(probs) / 3)  # by hand: the log of the mean probability
    assert torch.allclose(out[0], expected, atol=1e-6)
    assert torch.allclose(out.exp().sum(1), torch.ones(1))  # valid logits: softmax gives the mean back
    # With A's gap at 3, averaging logits lets the one confident member outvote the two others; averaging
    # probabilities does not.
    a.table.data = torch.tensor([[3.0, 0.0]])
    logit_mean = (a.table + b.table + c.table) / 3  # (3 + 0 + 0) / 3 = 1 > (0 + 1 + 1) / 3 = 0.67 -> class 0
    assert logit_mean.argmax().item() == 0
    assert Ensemble([a, b, c])(x).argmax().item() == 1  # (0.953 + 2 x 0.269) / 3 = 0.497 < 0.5 -> class 1
    res = evaluate(Ensemble([a, b, c]), [(x, y)], num_classes=2)
    assert res.top1 == 100.0
    # One member: its own log-softmax.
    assert torch.allclose(Ensemble([b])(x), torch.log_softmax(b.table, 1), atol=1e-6)
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def test_report_and_png(tmp_path):
    cm = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
    res = EvalResult(loss=0.5, top1=87.5, top5=100.0, num_samples=8, confusion=cm, classes=["cat", "dog", "fox"])
    assert np.isnan(res.per_class_accuracy[2])
    text = format_report(res)
    assert "top-1 87.50%" in text and "top-3 100.00%" in text and "n/a" in text and "fox" in text
    assert res.to_dict()["per_class"][2] == {"class": "fox", "support": 0, "top1": None}
    png = save_confusion_png(res, tmp_path / "cm.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000


def test_constant_predictions_are_flagged():
    k = 3
    same = Lookup(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))  # code 0: all-zero logits; code 1: class 0
    flat = evaluate(same, _batches([0, 0, 0, 0], [0, 1, 2, 1]), num_classes=k)
    assert flat.constant_predictions and flat.logit_spread == 0.0 and flat.top1 == 25.0
    assert "predicted class '0' for all 4 images; its logits are identical" in flat.constant_predictions_text()
    assert flat.to_dict()["constant_predictions"] is True and "warning: the model predicted" in format_report(flat)
    varied = evaluate(same, _batches([0, 1, 0, 1], [0, 1, 2, 1]), num_classes=k)  # class 0 always, logits differ
    assert varied.constant_predictions and varied.logit_spread == 1.0
    assert "identical" not in varied.constant_predictions_text()
    table = torch.eye(k)
    mixed = evaluate(Lookup(table), _batches([0, 1, 2], [0, 1, 2]), num_classes=k)
    assert not mixed.constant_predictions and mixed.to_dict()["constant_predictions"] is False
    single = evaluate(Lookup(table), _batches([2], [2]), num_classes=k)
    assert not single.constant_predictions  # one image says nothing about constancy


# ---------------------------------------------------------------------------------------------------------------
# A run trained with a class-names file evaluates without it (issue: eval failed unless the names were given again)


def test_match_classes_by_stored_folders_and_for_older_files():
    from litezoo.errors import InputError
    from litezoo.evaluate import match_classes

    meta = {"classes": ["tench", "goldfish"], "class_folders": ["n01440764", "n01443537"]}
    folders = ["n01440764", "n01443537"]
    assert match_classes(meta, folders, folders, "d") == ["tench", "goldfish"]  # names come from the model
    assert match_classes(meta, folders, ["fish a", "fish b"], "d", names_given=True) == ["fish a", "fish b"]
    with pytest.raises(InputError, match=r"class folders \['cat', 'dog'\], but the model was trained on \['n01"):
        match_classes(meta, ["cat", "dog"], ["tench", "goldfish"], "d")  # same names, other folders: refused
    older = {"classes": ["tench", "goldfish"]}  # written before class_folders existed: only names to compare
    assert match_classes(older, folders, ["tench", "goldfish"], "d", names_given=True) == ["tench", "goldfish"]
    with pytest.raises(InputError, match="pass the same file with --class-names"):
        match_classes(older, folders, folders, "d")
    plain = {"classes": ["cat", "dog"]}  # trained on folder names; the data has gained a names file since
    assert match_classes(plain, ["cat", "dog"], ["Cat", "Dog"], "d") == ["cat", "dog"]


@pytest.mark.slow  # trains a run, then evaluates it four times through the CLI
def test_eval_of_a_run_trained_with_class_names(tmp_path, capsys):
    """train --class-names FILE, then eval RUN --data FOLDER with no names file: the stored names are used."""
    import json

    from test_train import make_image_folder

    from litezoo.cli.main import main

    data = make_image_folder(tmp_path / "data", classes=2, train_per_class=8, test_per_class=4)
    names = tmp_path / "names.txt"
    names.write_text("class_0\tred things\nclass_1\tgreen things\n", encoding="utf-8")
    run = tmp_path / "run"
    common = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["train", "--model", "shufflenet_v2_x0_5_cifar", "--data", str(data), "--out", str(run),
                 "--epochs", "1", "--batch-size", "8", "--amp", "off", "--device", "cpu", "--threads", "1",
                 "--quiet", "--class-names", str(names), "--data.cache_dir", str(tmp_path / "cache")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(data), "--device", "cpu", "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["class"] for c in report["per_class"]] == ["red things", "green things"]
    assert report["num_samples"] == 8
    # The same names file at evaluation is accepted too; other names given now are what the report shows.
    assert main(["eval", str(run), "--data", str(data), "--device", "cpu", "--json", "--class-names", str(names),
                 "--out", str(tmp_path / "e1"), *common]) == 0  # fmt: skip
    assert [c["class"] for c in json.loads(capsys.readouterr().out)["per_class"]] == ["red things", "green things"]
    other = tmp_path / "other.txt"
    other.write_text("rot\ngruen\n", encoding="utf-8")
    assert main(["eval", str(run), "--data", str(data), "--device", "cpu", "--json", "--class-names", str(other),
                 "--out", str(tmp_path / "e2"), *common]) == 0  # fmt: skip
    assert [c["class"] for c in json.loads(capsys.readouterr().out)["per_class"]] == ["rot", "gruen"]
    # Data whose class folders are not the model's is refused in one line (exit 2), whatever it is called.
    wrong = make_image_folder(tmp_path / "wrong", classes=3, train_per_class=1, test_per_class=2)
    assert main(["eval", str(run), "--data", str(wrong), "--device", "cpu", *common]) == 2
    assert "class folders ['class_0', 'class_1', 'class_2'], but the model was trained on" in capsys.readouterr().err
    # What ships matches data the same way: the export checks itself on the run's data (no names file there) and
    # the ONNX file, carrying the class folders, evaluates on the folder with the trained names.
    onnx = tmp_path / "run.onnx"
    assert main(["export", str(run), "--out", str(onnx)]) == 0
    capsys.readouterr()
    assert main(["eval", str(onnx), "--data", str(data), "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["class"] for c in report["per_class"]] == ["red things", "green things"] and report["num_samples"] == 8
    assert main(["eval", str(onnx), "--data", str(wrong), *common]) == 2
    assert "class folders ['class_0', 'class_1', 'class_2'], but the model was trained on" in capsys.readouterr().err


def test_build_options_from_the_resumed_checkpoint_and_conflicts():
    """The config as run takes the resumed checkpoint's build options; a config asking for others is refused,
    and so is an option the checkpoint's model was built without (an old file: options None)."""
    import dataclasses

    from litezoo import checkpoint as ck
    from litezoo.config import resolve
    from litezoo.errors import InputError
    from litezoo.run import build_model, model_options, resolve_model_options

    meta = ck.ModelMeta(model_name="efficientnet_b0_cifar", num_classes=2, in_chans=3, image_size=32,
                        classes=["a", "b"], mean=[0.5] * 3, std=[0.25] * 3, options={"bn_eps": 1e-5})  # fmt: skip
    ckpt = ck.Checkpoint(meta=meta, config={}, model={}, optimizer={}, scheduler={}, scaler=None, ema=None,
                         lookahead=None, loader={}, state={"step": 1, "epoch": 1}, rng=[], world_size=1)  # fmt: skip
    cfg = resolve(None, {"model": "efficientnet_b0_cifar"})
    resolve_model_options(cfg, ckpt)
    assert model_options(cfg) == {"bn_eps": 1e-5}
    with torch.device("meta"):
        assert {m.eps for m in build_model(cfg, 2).modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}
    with pytest.raises(InputError, match="built with bn_eps=1e-05, but model.bn_eps=0.001"):
        resolve_model_options(resolve(None, {"model": "efficientnet_b0_cifar", "bn_eps": "1e-3"}), ckpt)
    old = dataclasses.replace(ckpt, meta=dataclasses.replace(meta, options=None))
    with pytest.raises(InputError, match="built without bn_eps"):
        resolve_model_options(resolve(None, {"model": "efficientnet_b0_cifar", "bn_eps": "1e-5"}), old)
    plain = resolve(None, {"model": "efficientnet_b0_cifar"})
    resolve_model_options(plain, old)
    assert model_options(plain) == {}
    # An option the model does not take is one line from create_model.
    with pytest.raises(InputError, match="has no option"):
        build_model(resolve(None, {"model": "shufflenet_v2_x0_5_cifar", "shuffle_order": "megvii"}), 2)
