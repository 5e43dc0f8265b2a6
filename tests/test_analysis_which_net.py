"""benchmarks/which_net.py: runs map to families, accuracy and recipe are read from the run folders, the table
and the chart say what was measured. Timing itself is litezoo.deploy.bench's (tested in test_deploy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script

from litezoo.errors import InputError



@pytest.fixture(scope="module")
def which_net():
    return load_script("benchmarks/which_net.py")


def _run(tmp_path: Path, family: str, top1s: list[float], epochs: int = 3, lr: float = 0.1) -> Path:
    run = tmp_path / family
    run.mkdir()
    (run / "config.yaml").write_text(
        f"model: {{name: {family}_cifar, num_classes: 10}}\n"
        f"data: {{path: /nonexistent/cifar-10-batches-bin, image_size: 32, limit_train: 10000, limit_eval: null,"
        f" batch_size: 128}}\n"
        f"optim: {{name: sgd, lr: {lr}}}\nschedule: {{name: cosine}}\ntrain: {{epochs: {epochs}, seed: 0}}\n"
    )
    lines = [json.dumps({"epoch": i + 1, "test_top1": t, "test_top5": 99.0, "time_s": 10.0 * (i + 1)})
             for i, t in enumerate(top1s)]  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "run.json").write_text(json.dumps({"precision": "fp32", "machine": {"cpu_model": "Test CPU"}}))
    return run


def test_run_maps_to_its_family_with_final_and_best_accuracy(which_net, tmp_path):
    run = _run(tmp_path, "mobilenet_v2_x1_0", [40.0, 55.5, 54.0])
    acc = which_net.read_accuracy(str(run))
    assert acc["family"] == "mobilenet_v2_x1_0"
    assert acc["final_top1"] == 54.0 and acc["final_epoch"] == 3  # the recipe's end, not the best epoch
    assert acc["best_top1"] == 55.5 and acc["best_epoch"] == 2
    assert acc["finished"] and acc["epochs_done"] == 3 and acc["train_time_s"] == 30.0
    assert acc["recipe"]["train"]["epochs"] == 3 and "name" not in acc["recipe"]["model"]


def test_unfinished_run_is_marked(which_net, tmp_path):
    acc = which_net.read_accuracy(str(_run(tmp_path, "ghostnet_x1_0", [30.0], epochs=3)))
    assert not acc["finished"] and acc["epochs_done"] == 1 and acc["epochs_planned"] == 3


def test_shared_recipe_and_differences(which_net, tmp_path):
    runs = [_run(tmp_path, "mobilenet_v2_x1_0", [50.0]), _run(tmp_path, "ghostnet_x1_0", [45.0], lr=0.2)]
    per_family, shared = which_net.collect_accuracy([str(r) for r in runs])
    assert set(per_family) == {"mobilenet_v2_x1_0", "ghostnet_x1_0"}
    assert not shared["recipe_identical"]
    assert shared["recipe_differs"] == {"ghostnet_x1_0": {"optim.lr": [0.1, 0.2]}}
    assert shared["test_set"]["split"] == "test" and shared["test_set"]["images"] is None  # data not there


def test_two_runs_of_one_family_are_refused(which_net, tmp_path):
    a = _run(tmp_path, "mobilenet_v2_x1_0", [50.0])
    b = tmp_path / "again"
    b.mkdir()
    for f in a.iterdir():
        (b / f.name).write_bytes(f.read_bytes())
    with pytest.raises(InputError, match="two runs for mobilenet_v2_x1_0"):
        which_net.collect_accuracy([str(a), str(b)])


def _family(model: str, ms: float, top1: float | None, params: float = 2e6) -> dict:
    best = {"runtime": "ort", "precision": "fp32", "threads": 2, "median_ms": ms, "p10_ms": ms * 0.9,
            "p90_ms": ms * 1.1, "calls": 50}  # fmt: skip
    acc = None if top1 is None else {"final_top1": top1, "finished": True, "epochs_done": 3, "epochs_planned": 3}
    torch_row = {**best, "runtime": "torch", "median_ms": 2 * ms, "p10_ms": 1.8 * ms, "p90_ms": 2.2 * ms}
    return {"model": model, "params": params, "macs": 300e6, "latency": {"ort": best, "torch": torch_row},
            "best": best, "accuracy": acc}  # fmt: skip


def test_pareto_keeps_only_undominated(which_net):
    fams = [_family("fast_weak", 5, 60), _family("slow_strong", 20, 80), _family("dominated", 25, 70),
            _family("no_acc", 1, None)]  # fmt: skip
    assert which_net.pareto(fams) == ["fast_weak", "slow_strong"]


def _result(fams: list[dict]) -> dict:
    return {
        "families": fams, "cpu_shared": True, "load_average_before": 3.0, "load_average_after": 4.0,
        "machine": {"cpu_model": "Test CPU", "cpus_usable": 2, "cpu_capability": "AVX2"},
        "settings": {"input_size": 224, "runtimes": ["torch", "ort", "openvino"], "threads": [2], "repeats": 50,
                     "min_seconds": 2.0},
        "runs_shared": {"recipe": {"data": {"limit_train": 10000, "batch_size": 128}, "optim": {"name": "sgd",
                        "lr": 0.1}, "schedule": {"name": "cosine"}, "train": {"epochs": 3, "seed": 0}},
                        "recipe_identical": True, "test_set": {"data": "/x/cifar-10-batches-bin", "images": 1000}},
    }  # fmt: skip


def test_markdown_table_names_conditions_and_marks_the_front(which_net):
    result = _result([_family("fast_weak", 5, 60), _family("dominated", 25, 50)])
    result["pareto"] = which_net.pareto(result["families"])
    table = which_net.markdown_table(result)
    lines = table.splitlines()
    assert lines[0].startswith("| model | params | MACs @224 | torch eager ms | ONNX Runtime ms | OpenVINO ms")
    assert "| **fast_weak** | 2.00M | 300M | 10.0 (9.0–11.0) | 5.0 (4.5–5.5) | — | ONNX Runtime | 60.0 |" in lines
    assert "| dominated |" in table
    assert "CPU shared" in table and "1,000 test images" in table and "3 epochs, 10000 training images" in table


def test_chart_is_written_without_touching_pyplot(which_net, tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    result = _result([_family("a", 5, 60), _family("b", 20, 80, params=5e6)])
    result["pareto"] = which_net.pareto(result["families"])
    out = tmp_path / "chart.png"
    which_net.plot(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend


def test_bad_arguments_exit_2(which_net, capsys):
    assert which_net.main(["--families", "mobilenet_v2_x1_0_cifar", "--no-accuracy"]) == 2
    assert "CIFAR form" in capsys.readouterr().err
    assert which_net.main(["--families", "mobilenet_v9"]) == 2
    assert which_net.main(["--runtimes", "tflite"]) == 2
    assert which_net.main(["--runs", "/nonexistent/run"]) == 2
