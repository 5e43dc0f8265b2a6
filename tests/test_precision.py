"""Precision choice by capability (capability and CPU flags monkeypatched), autocast, scaler."""

from __future__ import annotations

import warnings

import pytest
import torch

from litezoo import machine as M
from litezoo import precision as P
from litezoo.errors import InputError

CPU = torch.device("cpu")
SAPPHIRE_RAPIDS = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "amx_bf16"})
COOPER_LAKE = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"})
SKYLAKE_X = frozenset({"avx2", "fma", "avx512f", "avx512bw"})
HASWELL = frozenset({"avx2", "fma"})


@pytest.fixture
def cpu_as(monkeypatch):
    """Pretend to run on a CPU with the given torch capability and /proc/cpuinfo flags."""

    def set_cpu(capability: str, flags: frozenset[str]) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(M, "cpu_flags", lambda: flags)

    return set_cpu


@pytest.mark.parametrize("flags", [SAPPHIRE_RAPIDS, COOPER_LAKE], ids=["amx_bf16", "avx512_bf16"])
def test_auto_picks_bf16_on_cpus_with_native_bf16(cpu_as, flags):
    cpu_as("AVX512", flags)
    prec = P.choose_precision("auto", CPU)
    assert (prec.mode, prec.dtype, prec.use_scaler) == ("bf16", torch.bfloat16, False)
    assert "natively" in prec.reason and "avx512_bf16" in prec.reason


@pytest.mark.parametrize(
    "capability, flags",
    [("AVX2", HASWELL), ("AVX512", SKYLAKE_X), ("AVX2", SAPPHIRE_RAPIDS), ("DEFAULT", frozenset())],
    ids=["avx2-cpu", "avx512-without-bf16", "bf16-cpu-limited-to-avx2-kernels", "no-flags"],
)
def test_auto_picks_fp32_without_native_bf16(cpu_as, capability, flags):
    cpu_as(capability, flags)
    prec = P.choose_precision("auto", CPU)
    assert (prec.mode, prec.dtype, prec.use_scaler) == ("fp32", None, False)
    assert f"capability {capability}" in prec.reason and "no native bf16" in prec.reason


def test_forced_bf16_on_avx2_warns_and_is_honoured(cpu_as):
    cpu_as("AVX2", HASWELL)
    with pytest.warns(UserWarning, match="without native bf16.*slower than fp32"):
        prec = P.choose_precision("bf16", CPU)
    assert (prec.mode, prec.dtype) == ("bf16", torch.bfloat16)


def test_forced_bf16_on_native_cpu_does_not_warn(cpu_as):
    cpu_as("AVX512", SAPPHIRE_RAPIDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.choose_precision("bf16", CPU).dtype is torch.bfloat16


def test_fp16_on_cpu_is_refused_and_off_means_fp32(cpu_as):
    cpu_as("AVX512", SAPPHIRE_RAPIDS)
    with pytest.raises(InputError, match="amp=fp16 is not supported on the CPU"):
        P.choose_precision("fp16", CPU)
    for request in ("off", "fp32", "OFF"):
        prec = P.choose_precision(request, CPU)
        assert (prec.mode, prec.dtype, prec.use_scaler) == ("fp32", None, False)
    with pytest.raises(InputError, match="unknown amp mode 'half'"):
        P.choose_precision("half", CPU)


@pytest.mark.parametrize("major, mode, scaler", [(8, "bf16", False), (7, "fp16", True)], ids=["ampere", "turing"])
def test_cuda_auto_follows_native_bf16(monkeypatch, major, mode, scaler):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 5))
    prec = P.choose_precision("auto", torch.device("cuda"))
    assert (prec.mode, prec.use_scaler) == (mode, scaler)
    assert P.choose_precision("fp16", torch.device("cuda")).use_scaler is True
    if major < 8:
        with pytest.raises(InputError, match="native bf16"):
            P.choose_precision("bf16", torch.device("cuda"))


def test_mps_auto_is_fp32_and_explicit_fp16_scales():
    mps = torch.device("mps")
    assert P.choose_precision("auto", mps).dtype is None
    fp16 = P.choose_precision("fp16", mps)
    assert (fp16.dtype, fp16.use_scaler) == (torch.float16, True)


def test_autocast_and_scaler_on_this_cpu():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    bf16 = P.Precision("bf16", torch.bfloat16, False, "test")
    with P.autocast(bf16, CPU):
        assert layer(x).dtype == torch.bfloat16  # the matmul really ran in bf16
    fp32 = P.Precision("fp32", None, False, "test")
    with P.autocast(fp32, CPU):
        assert layer(x).dtype == torch.float32
    assert P.make_scaler(bf16, CPU) is None
    scaler = P.make_scaler(P.Precision("fp16", torch.float16, True, "test"), CPU)
    assert isinstance(scaler, torch.amp.GradScaler)
