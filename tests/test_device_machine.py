"""The one device resolver and the one machine description (litezoo.device, litezoo.machine)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from litezoo import device as D
from litezoo import machine as M
from litezoo.errors import InputError

CPU = torch.device("cpu")


def test_resolve_device_auto_order_and_errors(monkeypatch):
    assert D.resolve_device("cpu") == CPU and D.resolve_device(CPU) == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(D, "mps_available", lambda: False)
    assert D.resolve_device("auto") == CPU and D.resolve_device(None) == CPU
    with pytest.raises(InputError, match="no CUDA GPU is available"):
        D.resolve_device("cuda")
    with pytest.raises(InputError, match="MPS backend is not available"):
        D.resolve_device("mps")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        D.resolve_device("tpu")
    monkeypatch.setattr(D, "mps_available", lambda: True)
    assert D.resolve_device("auto") == torch.device("mps")  # mps before cpu
    assert D.resolve_device(" MPS ") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert D.resolve_device("auto") == torch.device("cuda")  # cuda first
    assert D.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(InputError, match="only 1 CUDA GPU"):
        D.resolve_device("cuda:1")


def test_every_caller_uses_the_one_resolver():
    """Timing code used to reject mps and train/eval accepted it: now all of them are the same function."""
    from litezoo.analysis import latency

    assert latency.resolve_device is D.resolve_device
    src = Path(D.__file__).parent
    definers = [p for p in src.rglob("*.py") if "def resolve_device(" in p.read_text(encoding="utf-8")]
    assert definers == [Path(D.__file__)]


# /proc/cpuinfo of the two CPU families litezoo documents (shortened), and what the reader must find.
_SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu
"""
_GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes sha2 crc32 atomics fphp asimdhp cpuid sve bf16 i8mm svebf16
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(
    "text, model, flags",
    [
        (_SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8488C", {"avx2", "avx512_bf16", "amx_bf16", "amx_int8", "fpu"}),
        (_GRAVITON3, None, {"asimd", "sve", "bf16", "i8mm"}),
    ],
    ids=["x86", "aarch64"],
)
def test_cpuinfo_reader_on_known_files(monkeypatch, text, model, flags):
    real_read = Path.read_text
    monkeypatch.setattr(
        Path, "read_text", lambda self, *a, **k: text if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k)
    )
    M.cpu_model_and_flags.cache_clear()
    try:
        got_model, got_flags = M.cpu_model_and_flags()
    finally:
        M.cpu_model_and_flags.cache_clear()
    assert flags <= got_flags and "fpu" not in got_flags - flags  # the first CPU's line only
    if model:
        assert got_model == model  # 'model name', not the numeric 'model'
    else:
        assert got_model and not got_model.isdigit()


def test_native_bf16_needs_the_flag_and_the_kernels():
    assert M.cpu_native_bf16("AVX512", frozenset({"avx512f", "amx_bf16"}))[0]
    assert M.cpu_native_bf16("AVX512", frozenset({"avx512f", "avx512_bf16"}))[0]
    native, why = M.cpu_native_bf16("AVX2", frozenset({"avx512f", "amx_bf16"}))
    assert not native and "despite" in why  # ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU
    assert not M.cpu_native_bf16("AVX512", frozenset({"avx512f"}))[0]


def test_machine_info_block():
    info = M.machine_info()
    want = {"cpu_model", "arch", "cpu_flags", "cpu_capability", "native_bf16", "cpu_count", "cpus_usable", "threads",
            "load_average", "torch_version", "numpy_version", "python_version", "git_commit", "git_dirty"}  # fmt: skip
    assert want <= set(info)
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch_version"] == torch.__version__ and info["threads"] == torch.get_num_threads()
    assert set(info["cpu_flags"]) <= set(M.cpu_flags()) and set(info["cpu_flags"]) <= set(M.REPORTED_FLAGS)
    assert info["native_bf16"] == M.cpu_native_bf16()[0]
    assert 1 <= info["cpus_usable"] <= info["cpu_count"]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_commit_short_hash_dirty_flag_and_none_outside_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    code = repo / "code.py"
    code.write_text("x = 1\n")
    _git("add", "code.py", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one", cwd=repo)
    head = _git("rev-parse", "--short", "HEAD", cwd=repo)
    assert M.git_commit(code) == {"commit": head, "dirty": False}
    code.write_text("x = 2\n")
    assert M.git_commit(code) == {"commit": head, "dirty": True}
    untracked = repo / "installed.py"  # e.g. a wheel's copy inside a venv that sits in some repository
    untracked.write_text("")
    assert M.git_commit(untracked) == {"commit": None, "dirty": None}
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "f.py").write_text("")
    assert M.git_commit(outside / "f.py") == {"commit": None, "dirty": None}
