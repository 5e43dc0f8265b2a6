"""Checkpoint files: atomic writes, keep-K, weights_only loading, refusal of pickles, truncation, RNG state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from litezoo import checkpoint as ck
from litezoo import fsutil
from litezoo.errors import InputError, WorkError

META = ck.ModelMeta(model_name="m", num_classes=2, in_chans=3, image_size=32, classes=["a", "b"], mean=[0.5] * 3,
                    std=[0.25] * 3)  # fmt: skip


def _state(value: float, step: int = 1, side: int = 256) -> ck.Checkpoint:
    """A small but complete checkpoint whose weights are all ``value``."""
    return ck.Checkpoint(
        meta=META, config={"train": {}}, model={"w": torch.full((side, side), value)}, optimizer={}, scheduler={},
        scaler=None, ema=None, lookahead=None, loader={}, state={"step": step, "epoch": 0}, rng=[ck.rng_state()],
        world_size=1,
    )  # fmt: skip


def test_save_and_load_roundtrip_weights_only(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    ck.save_checkpoint(_state(3.0), path)
    loaded = ck.load_checkpoint(path)
    assert torch.equal(loaded.model["w"], torch.full((256, 256), 3.0)) and loaded.meta == META and loaded.step == 1
    # Nothing but the target is left in the folder (no temp files).
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_one_serialisation_written_to_several_files(tmp_path):
    a, b = tmp_path / "epoch_0001.pt", tmp_path / "last.pt"
    ck.save_checkpoint(_state(1.0), a, b)
    assert a.read_bytes() == b.read_bytes()


def test_failed_write_leaves_previous_file_byte_identical(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.save_checkpoint(_state(1.0), path)
    before = path.read_bytes()

    calls = {"n": 0}
    real = fsutil._write_chunk

    def disk_full_after_first_chunk(f, chunk):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        real(f, chunk)

    monkeypatch.setattr(fsutil, "_CHUNK", 4096)
    monkeypatch.setattr(fsutil, "_write_chunk", disk_full_after_first_chunk)
    with pytest.raises(WorkError) as err:
        ck.save_checkpoint(_state(2.0), path)
    assert calls["n"] == 2  # it really failed half-way through
    # One line naming the file and the space it needed (the serialised size); the old file is still there.
    size = len(ck.to_bytes(_state(2.0)))
    assert str(path) in str(err.value) and f"needs {size / 1e6:.1f} MB" in str(err.value)
    assert "previous file is unchanged" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temp file was removed


@pytest.mark.slow
def test_save_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    """SIGKILL a real process while it writes last.pt: the old last.pt stays byte-identical and loadable."""
    folder = tmp_path / "checkpoints"
    script = textwrap.dedent(
        f"""
        import sys, time, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from litezoo import checkpoint as ck
        from litezoo import fsutil
        from test_checkpoint import _state
        folder = {str(folder)!r}
        state = lambda v: _state(v, side=512)
        ck.save_checkpoint(state(1.0), folder + "/last.pt")
        fsutil._CHUNK = 64 * 1024
        real = fsutil._write_chunk
        n = [0]
        def slow(f, chunk):
            real(f, chunk)
            n[0] += 1
            if n[0] == 3:
                f.flush()
                print("WRITING", flush=True)
                time.sleep(60)
        fsutil._write_chunk = slow
        ck.save_checkpoint(state(2.0), folder + "/last.pt")
        print("DONE", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", line
        before = (folder / "last.pt").read_bytes()
        temps = [p for p in folder.iterdir() if p.name != "last.pt"]
        assert len(temps) == 1 and temps[0].stat().st_size > 0  # the new file is half written
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert (folder / "last.pt").read_bytes() == before
    assert torch.equal(ck.load_checkpoint(folder / "last.pt").model["w"], torch.full((512, 512), 1.0))
    # The leftover cannot be mistaken for a checkpoint: hidden and not ending in .pt ...
    leftovers = [p for p in folder.iterdir() if p.name != "last.pt"]
    assert all(p.name.startswith(".") and not p.name.endswith(".pt") for p in leftovers)
    assert ck.last_good_checkpoint(folder) == folder / "last.pt"
    # ... and the next run's clean-up removes it (its writer is dead).
    assert ck.remove_stale_temp_files(folder) == leftovers
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]


class _Payload:
    def __reduce__(self):  # what a malicious pickle would do on load
        return (os.system, ("echo pwned",))


def test_pickled_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ck.FORMAT, "model": {}, "x": _Payload()}, path)
    with pytest.raises(InputError, match="pickled Python objects"):
        ck.load_checkpoint(path)


def test_truncated_checkpoint_names_file_and_last_good(tmp_path):
    folder = tmp_path / "checkpoints"
    ck.save_checkpoint(_state(2.0, step=20), folder / "epoch_0002.pt", folder / "best.pt")
    ck.save_checkpoint(_state(1.0, step=10), folder / "epoch_0001.pt")  # written last, but earlier in training
    good = folder / "epoch_0002.pt"  # furthest into training; named rather than its twin best.pt
    data = good.read_bytes()
    last = folder / "last.pt"
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        ck.load_checkpoint(last)
    msg = str(err.value)
    assert str(last) in msg and "truncated or corrupt" in msg
    assert f"last good checkpoint is {good}" in msg


def test_not_a_litezoo_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(InputError, match="not a litezoo checkpoint"):
        ck.load_checkpoint(path)


def test_keep_last_k_epoch_files(tmp_path):
    for e in range(1, 8):
        ck.save_checkpoint(_state(float(e)), ck.epoch_path(tmp_path, e), ck.checkpoint_dir(tmp_path) / ck.LAST)
    ck.save_checkpoint(_state(3.0), ck.checkpoint_dir(tmp_path) / ck.BEST)
    removed = ck.prune_epoch_checkpoints(tmp_path, keep=5)
    assert [p.name for p in removed] == ["epoch_0001.pt", "epoch_0002.pt"]
    names = sorted(p.name for p in ck.checkpoint_dir(tmp_path).iterdir())
    assert names == ["best.pt"] + [f"epoch_{e:04d}.pt" for e in range(3, 8)] + ["last.pt"]


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    ck.save_checkpoint(_state(0.0), tmp_path / "r.pt")  # _state records the RNG state of this moment
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    (saved,) = ck.load_checkpoint(tmp_path / "r.pt").rng
    ck.set_rng_state(saved)
    got = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_resolve_resume_path(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InputError, match="nothing to resume"):
        ck.resolve_resume_path(run)
    ck.save_checkpoint(_state(1.0), ck.checkpoint_dir(run) / "last.pt", ck.epoch_path(run, 1))
    assert ck.resolve_resume_path(run) == (run / "checkpoints" / "last.pt", run)
    assert ck.resolve_resume_path(ck.epoch_path(run, 1)) == (ck.epoch_path(run, 1), run)


def test_safetensors_export_roundtrip_with_metadata(tmp_path):
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)  # non-contiguous weights
    sd = conv.state_dict()
    path = ck.export_safetensors(sd, tmp_path / "model.safetensors", {"model_name": "x", "classes": ["a", "b"]})
    tensors, meta = ck.load_safetensors(path)
    assert meta == {"model_name": "x", "classes": ["a", "b"]}
    assert all(torch.equal(tensors[k], sd[k]) for k in sd)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="truncated or corrupt"):
        ck.load_safetensors(path)


def test_model_options_round_trip_and_old_files_without_them(tmp_path):
    """ModelMeta.options (build options such as bn_eps) survive checkpoint and safetensors; files written before
    the field existed load with options None, and rebuild with the builder's defaults."""
    import dataclasses

    from litezoo.evaluate import load_trained_model
    from litezoo.registry import create_model

    meta = dataclasses.replace(META, options={"bn_eps": 1e-5})
    ckpt = dataclasses.replace(_state(1.0, side=4), meta=meta)
    path = tmp_path / "checkpoints" / "last.pt"
    ck.save_checkpoint(ckpt, path)
    assert ck.load_checkpoint(path).meta.options == {"bn_eps": 1e-5}
    assert ck.load_checkpoint(path).meta.build_options() == {"bn_eps": 1e-5}
    # An older file: the meta dict has no 'options' key (version 2), or is flat (version 1).
    d = ckpt.to_dict()
    d["meta"] = {k: v for k, v in d["meta"].items() if k != "options"}
    torch.save(d, path)
    assert ck.load_checkpoint(path).meta.options is None and ck.load_checkpoint(path).meta.build_options() == {}
    flat = {k: v for k, v in d.items() if k not in ("meta", "state", "version")}
    flat.update(d["meta"], **d["state"])
    torch.save(flat, path)
    assert ck.load_checkpoint(path).meta == META
    with pytest.raises(InputError, match="options must be a mapping"):
        ck.ModelMeta.from_dict({**META.to_dict(), "options": ["bn_eps"]}, "x.pt")

    # A safetensors export with options rebuilds the model with them; one without (older) with the defaults.
    torch.manual_seed(0)
    net = create_model("efficientnet_b0_cifar", num_classes=2, bn_eps=1e-5)
    for options in ({"bn_eps": 1e-5}, None):
        info = {**dataclasses.replace(META, model_name="efficientnet_b0_cifar", options=options).to_dict(), "epoch": 1}
        if options is None:
            del info["options"]
        out = ck.export_safetensors(net.state_dict(), tmp_path / "model.safetensors", info)
        model, got = load_trained_model(out)
        assert got.get("options") == options
        eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert eps == ({1e-5} if options else {1e-3})
