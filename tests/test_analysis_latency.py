"""measure_latency reports its conditions; bad devices and settings are refused clearly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from litezoo.analysis.latency import measure_latency, summarize, time_callable
from litezoo.device import resolve_device
from litezoo.errors import InputError


def test_measure_latency_reports_statistics_and_conditions():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).train()
    result = measure_latency(model, (2, 3, 8, 8), "cpu", warmup=1, runs=5, threads=1)
    assert result["runs"] == 5 and result["warmup"] == 1 and result["batch"] == 2
    assert result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert result["min_ms"] <= result["median_ms"] and result["std_ms"] >= 0
    assert result["threads"] == 1 and result["torch_version"] == torch.__version__
    assert result["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(result["cpu_flags"], list) and result["cpu_model"]
    assert "git_commit" in result and "numpy_version" in result  # litezoo.machine's block, as in every benchmark
    assert model.training  # the caller's mode is restored


def test_summarize_percentiles():
    stats = summarize([float(v) for v in range(1, 12)])  # 1..11
    assert stats["median_ms"] == 6 and stats["p10_ms"] == 2 and stats["p90_ms"] == 10 and stats["min_ms"] == 1


def test_time_callable_counts_calls():
    calls = []
    times = time_callable(lambda: calls.append(1), torch.device("cpu"), warmup=2, runs=3)
    assert len(times) == 3 and len(calls) == 5


def test_bad_devices_and_settings():
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU is available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu9")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(InputError, match="runs"):
        measure_latency(nn.ReLU(), (1, 3), runs=0)
    with pytest.raises(InputError, match="input_shape"):
        measure_latency(nn.ReLU(), (1, -3))
    with pytest.raises(InputError, match="threads"):
        measure_latency(nn.ReLU(), (1, 3), threads=0)
