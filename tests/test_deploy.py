"""Deployment: export self-check, metadata, int8 quantisation, bench rows, predict, bad input (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from litezoo import create_model
from litezoo.checkpoint import export_safetensors
from litezoo.cli.main import main
from litezoo.deploy.export import LOGIT_TOLERANCE, compare_logits, export_onnx
from litezoo.errors import InputError
from litezoo.runtime import OnnxClassifier, Preprocess, predict_files, read_metadata

CLASSES = ["cat", "dog", "ship"]  # a colour each: red, green, blue


def make_folder(root: Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """An image folder whose class is the dominant colour channel (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for ci, cls in enumerate(CLASSES):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.full((size, size, 3), 40.0)
                base[..., ci] = 200
                img = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def make_run(data: Path, run_dir: Path, cache: Path, steps: int = 12) -> Path:
    """A run folder as the trainer leaves it (model.safetensors + config.yaml), trained a few SGD steps."""
    from litezoo.data import BatchLoader, open_dataset

    ds = open_dataset(data, "train", cache_dir=cache)
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_x0_25_cifar", num_classes=ds.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = BatchLoader(ds, 24, train=True, seed=0, device="cpu", rank=0, world_size=1, mean=ds.mean, std=ds.std)
    model.train()
    done = 0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    run_dir.mkdir(parents=True)
    meta = {"model_name": "mobilenet_v1_x0_25_cifar", "num_classes": ds.num_classes, "in_chans": 3,
            "image_size": ds.image_size, "classes": list(ds.classes), "mean": list(ds.mean), "std": list(ds.std),
            "epoch": 1}  # fmt: skip
    export_safetensors(model.state_dict(), run_dir / "model.safetensors", meta)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"data": {"path": str(data), "cache_dir": str(cache)}}))
    return run_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    data = make_folder(root / "data", {"train": 24, "test": 8})
    run = make_run(data, root / "run", root / "cache")
    return root, data, run


@pytest.fixture(scope="module")
def exported(tiny):
    root, data, run = tiny
    report = export_onnx(run, root / "tiny.onnx", dynamic_batch=True)
    return Path(report["path"]), report


# ---------------------------------------------------------------------------------------------------------------
# Export


def test_export_self_check_and_metadata(tiny, exported):
    _, data, run = tiny
    path, report = exported
    check = report["check"]
    assert check["passed"] and check["max_abs_logit_diff"] <= LOGIT_TOLERANCE
    assert check["top1_agreement"] == 100.0 and check["decisive_inputs"] > 0
    assert "test images" in check["inputs"]  # real inputs of the run's data, not random ones
    meta = read_metadata(path)
    train_meta = json.loads(_safetensors_meta(run / "model.safetensors"))
    for key in ("image_size", "classes", "mean", "std", "model_name"):
        assert meta[key] == train_meta[key], key
    assert meta["resize"] == 32 and meta["precision"] == "fp32" and meta["litezoo_version"]
    # an independent check: ONNX Runtime and the PyTorch model on one hand-made input
    from litezoo.evaluate import load_trained_model

    model, _ = load_trained_model(run)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(OnnxClassifier(path).logits(x), ref, atol=LOGIT_TOLERANCE)


def _safetensors_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["litezoo"]


def test_export_fixed_batch_runs_any_count(tiny, tmp_path):
    _, _, run = tiny
    report = export_onnx(run, tmp_path / "b1.onnx", dynamic_batch=False, check_images=8)
    clf = OnnxClassifier(report["path"])
    assert clf.fixed_batch == 1
    x = np.random.default_rng(2).standard_normal((5, 3, 32, 32), dtype=np.float32)
    assert clf.logits(x).shape == (5, 3)


def test_export_openvino_matches_torch(tiny, tmp_path):
    pytest.importorskip("openvino")
    from litezoo.deploy.export import export_openvino

    _, _, run = tiny
    report = export_openvino(run, tmp_path / "ir" / "tiny.xml", check_images=8)
    assert report["check"]["passed"] and Path(report["bin"]).is_file()
    assert not list((tmp_path / "ir").glob(".ov-*"))  # no temp folder left behind


# a table of (reference, candidate) -> (max diff, agreement): ties within the tolerance are not counted
@pytest.mark.parametrize(
    "ref, cand, diff, agree",
    [
        ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], 0.0, 100.0),
        ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [2.0, 1.0]], 2.0, 50.0),
        ([[1e-6, 0.0]], [[0.0, 1e-6]], 1e-6, None),  # an untrained net's near-equal logits: a tie
    ],
)
def test_compare_logits_table(ref, cand, diff, agree):
    got = compare_logits(np.array(ref, np.float32), np.array(cand, np.float32))
    assert got["max_abs_logit_diff"] == pytest.approx(diff, rel=1e-6)
    assert got["top1_agreement"] == agree


# ---------------------------------------------------------------------------------------------------------------
# The torch-free preprocessing is the training eval transform


def test_runtime_preprocess_matches_training_decode(tmp_path):
    from litezoo.data.decode import Fit, load_image

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))
    img.save(tmp_path / "photo.jpg", quality=90)
    img.save(tmp_path / "photo.png")
    pre = Preprocess(256, 224, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    for name in ("photo.jpg", "photo.png"):
        ours = pre.load(tmp_path / name)
        theirs = load_image(str(tmp_path / name), Fit(256, 224), None).pixels
        np.testing.assert_array_equal(ours, theirs)
    # normalisation against the hand-written formula
    px = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    want = ((px / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.3])).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(pre.normalise(px), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# int8


@pytest.mark.parametrize("method", ["ort-qdq", "ort-qop"])
def test_quantize_ort_keeps_accuracy_and_records_fp32_layers(tiny, tmp_path, method):
    from litezoo.deploy.quantize import quantize_run

    _, _, run = tiny
    r = quantize_run(run, tmp_path / "q.onnx", calib=24, method=method, exclude=["depthwise"])
    assert abs(r["top1_change"]) <= 10.0  # 24 test images: one flip is 4.2 pt
    assert r["agreement_with_fp32"] >= 90.0
    assert len(r["excluded"]) == 13  # MobileNet V1 has 13 depthwise convs
    meta = read_metadata(r["path"])
    assert meta["precision"] == "int8" and meta["quantization"]["fp32_layers"] == r["excluded"]
    ops = {n.op_type for n in onnx.load(r["path"]).graph.node}
    assert ("QuantizeLinear" in ops) if method == "ort-qdq" else ("QLinearConv" in ops)


def test_quantize_sensitivity_keeps_the_worst(tiny, tmp_path):
    from litezoo.deploy.quantize import quantize_run

    _, _, run = tiny
    r = quantize_run(run, tmp_path / "k.onnx", calib=16, keep_fp32=2, rank_images=24)
    assert len(r["ranking"]) == r["quantizable_layers"] == 28
    costs = [(row["top1_flip_pct"], row["logit_mse"]) for row in r["ranking"]]
    assert costs == sorted(costs, reverse=True)  # worst first
    assert r["kept_fp32"] == [row["name"] for row in r["ranking"][:2]]
    # the kept layers really are float: their weights are plain float initializers, not dequantised int8
    graph = onnx.load(r["path"]).graph
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    kept_nodes = [n for n in graph.node if n.name in r["kept_fp32"]]
    assert len(kept_nodes) == 2 and all(n.input[1] in floats for n in kept_nodes)
    others = [n for n in graph.node if n.op_type == "Conv" and n.name not in r["kept_fp32"]]
    assert others and all(n.input[1] not in floats for n in others)


def _dead_channel_onnx(path: Path, dead: bool = True) -> np.ndarray:
    """A tiny conv net with what BN folding left in ShuffleNet V1 after a short run: a ReLU channel that is
    always 0 feeding a depthwise channel with an enormous weight (3e4, the others ~1). Returns inputs."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3, padding=1, groups=6),
        torch.nn.Conv2d(6, 4, 1), torch.nn.Flatten(),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight[2] = 0.0 if dead else 1.0
        net[0].bias[2] = -1.0 if dead else 0.0  # dead: channel 2 is exactly 0 after the ReLU on every input
        net[2].weight[2] = 3e4  # ... and the depthwise conv after it has a folded-BN sized weight
        net[2].bias[2] = 5.0
    x = np.random.default_rng(0).normal(size=(48, 3, 8, 8)).astype(np.float32)
    torch.onnx.export(net.eval(), (torch.from_numpy(x[:1]),), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
                      opset_version=17, dynamo=False)  # fmt: skip
    return x


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_folds_dead_channels(tmp_path, per_channel):
    from litezoo.deploy.export import ort_logits, ort_session
    from litezoo.deploy.quantize import OrtQuantizer, fold_dead_channels

    x = _dead_channel_onnx(tmp_path / "fp32.onnx")
    fp32 = ort_logits(ort_session(tmp_path / "fp32.onnx", threads=1), x)
    folded, dead = fold_dead_channels(tmp_path / "fp32.onnx", x[:32], tmp_path / "folded.onnx")
    assert [d["channels"] for d in dead] == [[2]]  # only the dead channel, only in the depthwise conv
    np.testing.assert_allclose(ort_logits(ort_session(folded, threads=1), x), fp32, rtol=1e-5, atol=1e-4)

    def int8_error(source: Path, name: str) -> float:
        work = tmp_path / name
        work.mkdir()
        q = OrtQuantizer(source, x[:32], work, qop=False, per_channel=per_channel)
        got = ort_logits(ort_session(q.quantize(work / "q.onnx"), threads=1), x)
        return float(np.linalg.norm(got - fp32) / np.linalg.norm(fp32 - fp32.mean(0)))  # relative rms error

    before, after = int8_error(tmp_path / "fp32.onnx", "raw"), int8_error(folded, "folded")
    assert after < 0.1 < before  # int8 follows fp32 only once the dead channel is folded


def test_fold_dead_channels_leaves_live_outliers(tmp_path):
    from litezoo.deploy.quantize import fold_dead_channels

    x = _dead_channel_onnx(tmp_path / "fp32.onnx", dead=False)  # channel 2 varies: its big weight is live, keep it
    path, dead = fold_dead_channels(tmp_path / "fp32.onnx", x, tmp_path / "folded.onnx")
    assert dead == [] and path == tmp_path / "fp32.onnx"


def test_quantize_cli_percentile_json_is_clean(tiny, tmp_path, capsys):
    _, _, run = tiny
    code = main(["quantize", str(run), "--calib", "16", "--calibration", "percentile", "--out",
                 str(tmp_path / "p.onnx"), "--json"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    r = json.loads(out)  # ORT's histogram calibrations print progress: it must not land on stdout
    assert r["calibration"] == "percentile" and read_metadata(r["path"])["quantization"]["calibration"] == "percentile"
    code = main(["quantize", str(run), "--calib", "16", "--method", "openvino", "--calibration", "entropy"])
    assert code == 2 and "is an ONNX Runtime method" in capsys.readouterr().err


def test_quantize_bad_exclude_is_input_error(tiny, tmp_path):
    from litezoo.deploy.quantize import quantize_run

    _, _, run = tiny
    with pytest.raises(InputError, match="matches no quantisable layer"):
        quantize_run(run, tmp_path / "x.onnx", calib=8, exclude=["/no/such/*"])


@pytest.mark.slow  # torch.compile of the int8 graph: ~1-3 min on a 2-core CPU
def test_quantize_pt2e_compiled_int8(tiny, tmp_path):
    """pt2e (torch.export + X86InductorQuantizer, compiled by inductor) where torchao is installed: int8
    accuracy close to fp32, depthwise convs kept fp32 on request, a .pt2 file carrying the litezoo record."""
    pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")
    from litezoo.deploy.quantize import quantize_run

    _, _, run = tiny
    r = quantize_run(run, tmp_path / "q.int8.pt2", calib=24, method="pt2e", exclude=["depthwise"])
    assert r["method"] == "pt2e" and len(r["excluded"]) == 13  # module paths of MobileNet V1's depthwise convs
    assert abs(r["top1_change"]) <= 10.0 and r["agreement_with_fp32"] >= 90.0
    extra = {"litezoo.json": ""}
    program = torch.export.load(str(tmp_path / "q.int8.pt2"), extra_files=extra)
    record = json.loads(extra["litezoo.json"])
    assert record["precision"] == "int8" and record["quantization"]["fp32_layers"] == r["excluded"]
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets)  # really quantised, not an fp32 graph


def test_quantize_pt2e_without_torchao_is_one_line(tiny, monkeypatch, capsys):
    import litezoo.deploy.quantize as q

    _, _, run = tiny
    monkeypatch.setattr(q, "pt2e_available", lambda: (False, "--method pt2e needs the torchao package"))
    assert main(["quantize", str(run), "--method", "pt2e", "--calib", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the torchao package" in err[0]
    monkeypatch.setattr(q, "pt2e_available", lambda: (True, ""))
    assert main(["quantize", str(run), "--method", "pt2e", "--calib", "4", "--keep-fp32", "2"]) == 2
    assert "ort-qdq" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# predict


def test_predict_folder_accuracy_grid_and_skips(tiny, exported, tmp_path, capsys):
    root, data, _ = tiny
    path, _ = exported
    folder = tmp_path / "photos"
    for cls in CLASSES:
        (folder / cls).mkdir(parents=True)
        for f in sorted((data / "test" / cls).glob("*.png"))[:4]:
            (folder / cls / f.name).write_bytes(f.read_bytes())
    (folder / "cat" / "broken.jpg").write_bytes(b"not an image")
    res = predict_files(OnnxClassifier(path, threads=1), [folder], topk=2, keep_images=True)
    assert len(res.predictions) == 12 and list(res.skipped) == [str(folder / "cat" / "broken.jpg")]
    manual = 100.0 * np.mean([p.top[0][0] == Path(p.path).parent.name for p in res.predictions])
    assert res.accuracy == pytest.approx(manual)
    assert all(0.0 < sum(v for _, v in p.top) <= 1.0 + 1e-6 for p in res.predictions)
    ov = pytest.importorskip("openvino")  # the same labels through OpenVINO (reads the same .onnx file)
    assert ov
    res_ov = predict_files(OnnxClassifier(path, runtime="openvino", batch=8), [folder], topk=2)
    same = sum(a.top[0][0] == b.top[0][0] for a, b in zip(res_ov.predictions, res.predictions))
    assert len(res_ov.predictions) == 12 and same >= 11  # OpenVINO may run bf16 on AMX CPUs
    code = main(["predict", str(path), str(folder), "--grid", str(tmp_path / "grid.png"), "--threads", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["accuracy"] == pytest.approx(manual) and out["runtime"]["threads"] == 1
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    # the images themselves are red/green/blue, so look only at the title strips (first 30 rows of each cell)
    titles = np.concatenate([grid[r : r + 30] for r in range(0, grid.shape[0], 128 + 30)])
    t_blue = ((titles[..., 2] > 150) & (titles[..., 0] < 100) & (titles[..., 1] < 120)).sum()
    t_red = ((titles[..., 0] > 150) & (titles[..., 1] < 100) & (titles[..., 2] < 100)).sum()
    wrong = sum(not p.correct for p in res.predictions)
    assert (t_red > 0) == (wrong > 0) and (t_blue > 0) == (wrong < 12)


def test_runtime_choice_is_cached(exported, tmp_path, monkeypatch):
    from litezoo.runtime import choose_runtime, _label

    monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
    path, _ = exported
    first = choose_runtime(path, 4, seconds=0.05)
    second = choose_runtime(path, 4, seconds=0.05)
    assert not first["cached"] and second["cached"] and second["threads"] == first["threads"]
    assert second["runtime"] == first["runtime"]
    timed = first["median_ms"]  # every candidate was measured and the fastest chosen
    assert min(timed, key=timed.get) == _label(first["runtime"], first["threads"])
    assert len(list((tmp_path / "cache" / "deploy").glob("runtime-choice-*.json"))) == 1


def test_runtime_choice_candidates_pick_and_key(exported, tmp_path, monkeypatch):
    """The choice times 1 thread, all cores and each runtime's own default, takes the fastest, and keys its
    cache on the batch (another batch measures again)."""
    import litezoo.runtime as rt

    monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(rt, "usable_cpus", lambda: 2)
    path, _ = exported
    fake = {("ort", None): 9.0, ("ort", 1): 5.0, ("ort", 2): 7.0, ("openvino", None): 6.0, ("openvino", 1): 8.0,
            ("openvino", 2): 4.0}  # fmt: skip
    calls = []

    def timed(p, runtime, threads, batch, seconds, lanes):
        calls.append((runtime, threads, batch))
        return fake[(runtime, threads)]

    monkeypatch.setattr(rt, "_time_candidate", timed)
    assert rt.runtime_candidates(2, False) == [("ort", None), ("ort", 1), ("ort", 2)]
    assert rt.runtime_candidates(1, True) == [("ort", None), ("ort", 1), ("openvino", None), ("openvino", 1)]
    log: list[str] = []
    first = rt.choose_runtime(path, 8, log=log.append)
    have_ov = importlib.util.find_spec("openvino") is not None  # measured too only where installed
    assert {(r, t) for r, t, _ in calls} == {c for c in fake if have_ov or c[0] == "ort"}
    assert (first["runtime"], first["threads"]) == (("openvino", 2) if have_ov else ("ort", 1))
    assert not first["cached"] and any("->" in line for line in log)  # the measured choice is logged
    calls.clear()
    again = rt.choose_runtime(path, 8, log=log.append)
    assert again["cached"] and not calls and "cached" in log[-1]
    assert (again["runtime"], again["threads"]) == (first["runtime"], first["threads"])
    rt.choose_runtime(path, 1)  # another batch size: measured again, cached beside the first
    assert calls and {b for _, _, b in calls} == {1}
    assert len(list((tmp_path / "cache" / "deploy").glob("runtime-choice-*.json"))) == 2


def test_predict_cli_uses_the_cached_choice(exported, tiny, tmp_path, monkeypatch, capsys):
    """`litezoo predict` without --runtime/--threads runs on the cached choice, and says so."""
    import litezoo.runtime as rt

    monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
    _, data, _ = tiny
    path, _ = exported
    monkeypatch.setattr(rt, "_time_candidate",
                        lambda p, runtime, threads, *_: 1.0 if (runtime, threads) == ("ort", 1) else 2.0)
    folder = data / "test" / "cat"
    assert main(["predict", str(path), str(folder), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["runtime"]["runtime"] == "ort" and first["runtime"]["threads"] == 1
    assert not first["runtime"]["cached"] and first["runtime"]["batch"] == 8  # 8 images: one batch of 8
    monkeypatch.setattr(rt, "_time_candidate", lambda *a: pytest.fail("the cached choice must not be re-measured"))
    assert main(["predict", str(path), str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert again["runtime"]["cached"] and again["runtime"]["threads"] == 1 and "cached" in captured.err
    assert [p["top"] for p in again["predictions"]] == [p["top"] for p in first["predictions"]]


def test_predict_pipeline_matches_one_by_one(exported, tiny, tmp_path):
    """The batched, buffer-reusing, threaded pipeline gives what decoding and running each image alone gives,
    with a bad file in the middle of a batch and a last batch that is not full."""
    from litezoo.runtime import softmax

    _, data, _ = tiny
    path, _ = exported
    clf = OnnxClassifier(path, threads=1)
    files = sorted((data / "test").rglob("*.png"))[:11]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    inputs = files[:5] + [bad] + files[5:]
    res = predict_files(clf, inputs, topk=3, batch_size=4, parallel=3, keep_images=True)
    assert list(res.skipped) == [str(bad)] and len(res.predictions) == 11
    for pred, f, img in zip(res.predictions, files, res.images):
        px = clf.preprocess.load(f)
        np.testing.assert_array_equal(img, px)
        probs = softmax(clf.logits(clf.preprocess.normalise(px[None])))[0]
        want = [clf.classes[j] for j in np.argsort(-probs)[:3]]
        assert pred.path == str(f) and [c for c, _ in pred.top] == want
        np.testing.assert_allclose([p for _, p in pred.top], np.sort(probs)[::-1][:3], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2


def test_bad_inputs_exit_2(tiny, exported, tmp_path, capsys):
    root, data, _ = tiny
    path, _ = exported
    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(path.read_bytes()[:200])
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    foreign.write_bytes(proto.SerializeToString())
    big = export_onnx("mobilenet_v1_x0_25", tmp_path / "big.onnx", check_images=2)["path"]  # 224 px input
    cases = [
        (["predict", str(corrupt), str(data / "test")], "not a readable ONNX model"),
        (["predict", str(tmp_path / "README.txt"), str(data / "test")], "does not exist"),
        (["predict", str(foreign), str(data / "test")], "no litezoo metadata"),
        (["predict", str(path), str(tmp_path / "empty")], "holds no image files"),
        (["predict", big, str(data / "test" / "cat" / "0.png")], "the images do not fit this model"),
        (["export", "no_such_model_x"], "unknown model"),
        (["quantize", "mobilenet_v1_x0_25", "--calib", "4"], "needs a trained run"),
        (["bench", str(path), "--runtime", "ort", "--size", "64"], "does not fit"),
    ]
    for argv, needle in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, argv
        assert len(err) == 1 and needle in err[0], (argv, err)


# ---------------------------------------------------------------------------------------------------------------
# bench and eval of an exported file


def test_bench_rows_bound_and_threads_restored(tiny, exported):
    from litezoo.deploy.bench import bench

    _, _, run = tiny
    before = torch.get_num_threads()
    r = bench([run], runtimes=["torch", "ort"], batches=[1, 4], threads=[1], repeats=3, min_seconds=0.01)
    assert torch.get_num_threads() == before
    assert len(r["rows"]) == 4
    for row in r["rows"]:
        assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["images_per_s"] == pytest.approx(1e3 * row["batch"] / row["median_ms"])
        # the bound is FLOPs / measured matmul FLOP/s: linear in the batch
        assert row["fp32_bound_ms"] == pytest.approx(
            1e3 * row["gflops_per_image"] * 1e9 * row["batch"] / (r["matmul_gflops"]["1"] * 1e9), rel=0.01)
    for batch in (1, 4):
        best = r["fastest"][f"mobilenet_v1_x0_25_cifar batch {batch}"]
        assert best["median_ms"] == min(x["median_ms"] for x in r["rows"] if x["batch"] == batch)


def test_eval_of_exported_matches_pytorch(tiny, exported, tmp_path, capsys):
    root, data, run = tiny
    path, _ = exported
    assert main(["eval", str(path), "--data", str(data), "--cache-dir", str(root / "cache"),
                 "--out", str(tmp_path / "a"), "--json"]) == 0  # fmt: skip
    onnx_report = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--data", str(data), "--cache-dir", str(root / "cache"),
                 "--out", str(tmp_path / "b"), "--json"]) == 0  # fmt: skip
    torch_report = json.loads(capsys.readouterr().out)
    assert onnx_report["top1"] == torch_report["top1"]
    assert onnx_report["confusion"] == torch_report["confusion"]
    assert onnx_report["loss"] == pytest.approx(torch_report["loss"], abs=1e-4)


def test_bench_reports_cpu_flags_and_int8_speedup(tiny):
    """On an AVX2-only CPU int8 may not beat fp32: the report carries the CPU's flags, its int8 dot-product
    instructions (none there) and each int8 row's speed-up over the same runtime's fp32 row, whatever it is."""
    from litezoo.deploy.bench import bench, format_bench, int8_instructions
    from litezoo.machine import cpu_flags

    _, _, run = tiny
    r = bench([run], runtimes=["ort", "ort-int8"], batches=[2], threads=[1], repeats=3, min_seconds=0.01)
    assert r["machine"]["cpu_flags"] == [f for f in r["machine"]["cpu_flags"] if f in cpu_flags()]
    assert r["int8_instructions"] == int8_instructions()
    assert ("avx512_vnni" in cpu_flags()) == ("avx512_vnni" in r["int8_instructions"])
    fp32, int8 = (next(x for x in r["rows"] if x["runtime"] == name) for name in ("ort", "ort-int8"))
    assert int8["speedup_vs_fp32"] == pytest.approx(fp32["median_ms"] / int8["median_ms"])
    assert "speedup_vs_fp32" not in fp32
    text = format_bench(r)
    assert f"{int8['speedup_vs_fp32']:.2f}x over its fp32 row" in text and "int8 dot-product instructions" in text


# ---------------------------------------------------------------------------------------------------------------
# timing protocol and the deployment benchmark script


def test_time_calls_cap_keeps_min_calls_and_warmup_excluded():
    from litezoo.deploy.bench import time_calls

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    info = {}
    # 30 repeats would take 0.6 s; the cap stops after 0.1 s once 5 calls are timed
    t = time_calls(slow, repeats=30, min_seconds=0.0, max_seconds=0.1, min_calls=5, info=info)
    assert 5 <= len(t) < 30 and info["capped"] is True
    assert info["warmup_calls"] == 3 and len(calls) == len(t) + 3  # warm-up calls are not in the samples
    assert t.min() >= 0.02
    # a cap shorter than min_calls calls still yields min_calls samples
    t = time_calls(slow, repeats=30, min_seconds=0.0, max_seconds=0.001, min_calls=4, warmup=1)
    assert len(t) == 4
    # fast calls never reach the cap: the repeats / min_seconds rule decides, not capped
    info = {}
    t = time_calls(lambda: None, repeats=7, min_seconds=0.0, max_seconds=5.0, min_calls=3, info=info)
    assert len(t) == 7 and info["capped"] is False


def test_time_calls_slow_warmup_stops_after_two_calls():
    from litezoo.deploy.bench import time_calls

    calls = []
    info = {}
    time_calls(lambda: (calls.append(1), time.sleep(0.03)), repeats=2, min_seconds=0.0, warmup=3,
               warmup_seconds=0.04, info=info)  # fmt: skip
    assert info["warmup_calls"] == 2 and len(calls) == 4


def test_bench_keep_going_records_a_failing_row(tiny, monkeypatch):
    import litezoo.deploy.bench as b

    _, _, run = tiny
    real = b._runner

    def broken(model, runtime, batch, threads):
        if runtime == "ort":
            raise RuntimeError("session could not be created\nsecond line")
        return real(model, runtime, batch, threads)

    monkeypatch.setattr(b, "_runner", broken)
    r = b.bench([run], runtimes=["ort", "torch"], batches=[1], threads=[1], repeats=2, min_seconds=0.0,
                max_seconds=0.5, min_calls=2, keep_going=True)  # fmt: skip
    assert [row["runtime"] for row in r["rows"]] == ["torch"]
    assert r["errors"] == [{"model": "mobilenet_v1_x0_25_cifar", "runtime": "ort", "batch": 1, "threads": 1,
                            "error": "RuntimeError: session could not be created"}]  # fmt: skip
    assert r["timing"]["max_seconds"] == 0.5 and r["timing"]["min_calls"] == 2
    row = r["rows"][0]
    assert row["calls"] >= 2 and isinstance(row["capped"], bool) and row["warmup_calls"] >= 1
    with pytest.raises(RuntimeError, match="session could not be created"):
        b.bench([run], runtimes=["ort"], batches=[1], threads=[1], repeats=2, min_seconds=0.0)


def test_deploy_script_covers_every_family():
    """One model per registered family in the deployment benchmark (the classic VGG excepted: 7.6-15.5 GMACs at
    224 px, the tutorials' heavy reference; vgg_fast stands for VGG-style nets), and both MobileNet V3 sizes."""
    from conftest import load_script

    from litezoo.deploy.bench import RUNTIMES
    from litezoo.deploy.quantize import METHODS
    from litezoo.registry import list_models, model_info

    script = load_script("benchmarks/deploy.py")
    families = {model_info(n).family for n in list_models()} - {"vgg"}
    covered = {model_info(n).family for n in script.FAMILY_MODELS}
    assert covered == families
    assert all(not model_info(n).small_input for n in script.FAMILY_MODELS)  # ImageNet forms, 224 px
    assert {"mobilenet_v3_large_x1_0", "mobilenet_v3_small_x1_0"} <= set(script.FAMILY_MODELS)
    assert set(script.ALL_RUNTIMES) == set(RUNTIMES)
    labels = [v[0] for v in script.INT8_VARIANTS]
    assert len(labels) == len(set(labels))
    assert {v[1] for v in script.INT8_VARIANTS} == set(METHODS)  # every quantize method is a variant


def test_deploy_script_int8_part_records_a_failing_run(tmp_path):
    """A run that cannot be loaded (e.g. still training: no weights yet) is one error entry; the rest runs."""
    from conftest import load_script

    script = load_script("benchmarks/deploy.py")
    empty = tmp_path / "still_training"
    (empty / "checkpoints").mkdir(parents=True)
    saved = []
    out = script.int8_part([str(empty)], [1], [1], 4, {"repeats": 1, "min_seconds": 0.0}, lambda m: None,
                           save=lambda: saved.append(1))  # fmt: skip
    assert len(out) == 1 and out[0]["run"] == str(empty) and out[0]["error"] and saved == [1]
    assert "\n" not in out[0]["error"]


def test_int8_summary_skips_missing_speedups():
    from conftest import load_script

    script = load_script("benchmarks/deploy.py")
    rows = [
        {"variant": "a", "top1_change": -0.5, "speed": [{"batch": 1, "threads": 1, "speedup_vs_ort_fp32": 1.5}]},
        {"variant": "b", "top1_change": -2.0, "speed": [{"batch": 1, "threads": 1, "speedup_vs_ort_fp32": 2.0}]},
        {"variant": "c", "top1_change": 0.0, "speed": [{"batch": 1, "threads": 1, "speedup_vs_ort_fp32": None}]},
        {"variant": "d", "error": "RuntimeError: x"},
    ]
    s = script.int8_summary(rows)["batch 1 threads 1"]
    assert s["best"]["variant"] == "b" and s["best_within_1pt"]["variant"] == "a"


def test_deploy_script_merges_compile_rows_and_picks_fastest_over_both():
    from conftest import load_script

    script = load_script("benchmarks/deploy.py")
    base = {"rows": [{"runtime": "ort", "median_ms": 5.0}], "errors": [], "skipped": [], "notes": ["a"],
            "fastest": {"m batch 1": {"runtime": "ort", "threads": 1, "median_ms": 5.0},
                        "m batch 32": {"runtime": "ort", "threads": 2, "median_ms": 90.0}}}  # fmt: skip
    extra = {"rows": [{"runtime": "torch-compile", "median_ms": 4.0}], "errors": [{"error": "x"}], "skipped": [],
             "notes": ["b"], "fastest": {"m batch 1": {"runtime": "torch-compile", "threads": 2, "median_ms": 4.0}}}
    merged = script._merged(base, extra)
    assert [r["runtime"] for r in merged["rows"]] == ["ort", "torch-compile"]
    assert merged["fastest"]["m batch 1"]["runtime"] == "torch-compile"
    assert merged["fastest"]["m batch 32"]["runtime"] == "ort"
    assert merged["errors"] == [{"error": "x"}] and merged["notes"] == ["a", "b"]


def test_deploy_script_int8_file_keeps_the_preprocessing_record(exported, tmp_path):
    """The predict part's int8 file: quantised (QDQ nodes, int8 weights), read by `predict` like an exported file."""
    from conftest import load_script

    script = load_script("benchmarks/deploy.py")
    path, _ = exported
    q = script._int8_file(path, tmp_path)
    meta, fp32_meta = read_metadata(q), read_metadata(path)
    assert meta["precision"] == "int8" and fp32_meta["precision"] == "fp32"
    assert {k: meta[k] for k in ("image_size", "mean", "std", "classes")} == {
        k: fp32_meta[k] for k in ("image_size", "mean", "std", "classes")}  # fmt: skip
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = np.random.default_rng(1).standard_normal((2, 3, meta["image_size"], meta["image_size"]), dtype=np.float32)
    logits = OnnxClassifier(q, threads=1).logits(x)
    assert logits.shape == (2, len(meta["classes"])) and np.isfinite(logits).all()


def test_openvino_first_call_of_each_thread_runs_alone(exported, monkeypatch):
    """OpenVINO's binding can deadlock when two threads make their first call at once (docs/deploy.md): each
    thread's first call runs under the module's lock, later calls take no lock. A fake compiled model records."""
    import threading

    import litezoo.runtime as rt

    class CountingLock:
        def __init__(self):
            self.lock, self.entries = threading.Lock(), 0

        def __enter__(self):
            self.lock.acquire()
            self.entries += 1

        def __exit__(self, *exc):
            self.lock.release()

    counting = CountingLock()
    monkeypatch.setattr(rt, "_OV_FIRST_CALL", counting)
    path, _ = exported
    clf = OnnxClassifier(path, threads=1)
    first_calls_locked: list[bool] = []

    class FakeRequest:
        calls = 0

        def infer(self, inputs):
            if self.calls == 0:
                first_calls_locked.append(counting.lock.locked())
            self.calls += 1
            return [np.zeros((len(inputs[0]), 2), np.float32)]

    class FakeCompiled:
        def create_infer_request(self):
            return FakeRequest()

    clf._compiled, clf._local = FakeCompiled(), threading.local()
    x = np.zeros((1, 3, 8, 8), np.float32)
    workers = [threading.Thread(target=lambda: [clf._ov_run(x) for _ in range(3)]) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert first_calls_locked == [True, True]  # each thread's first call ran under the lock
    assert counting.entries == 2  # and only those: 6 calls, 2 acquisitions
    assert not counting.lock.locked()
