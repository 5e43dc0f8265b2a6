"""ONNX export with the preprocessing in the file, checked against PyTorch before the file is written.

The file carries one metadata entry, ``litezoo``: a JSON record of what a runtime needs to feed the model
(input size, shorter-side resize, mean/std, class names) and where it came from (model name, litezoo version).
:mod:`litezoo.runtime` reads it without torch. OpenVINO IR is converted from the checked ONNX graph.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from litezoo.deploy.source import Source, dataset_arrays, load_source, resize_for
from litezoo.errors import InputError, WorkError
from litezoo.fsutil import atomic_write_bytes
from litezoo.runtime import METADATA_KEY

DEFAULT_OPSET = 17
LOGIT_TOLERANCE = 1e-4  # max |logit difference| accepted between ONNX Runtime and PyTorch, fp32
CHECK_IMAGES = 64  # inputs the self-check runs on


def metadata_record(src: Source, *, opset: int, precision: str = "fp32", extra: dict | None = None) -> dict:
    from litezoo import __version__

    meta = src.meta
    size = int(meta["image_size"])
    return {
        "model_name": meta["model_name"],
        "litezoo_version": __version__,
        "image_size": size,
        "resize": resize_for(size),  # shorter side before the centre crop (the eval transform of training)
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "classes": list(meta["classes"]),
        # the class folders behind renamed classes (a names file at training): evaluation matches data by them
        **({"class_folders": list(meta["class_folders"])} if meta.get("class_folders") else {}),
        "in_chans": int(meta["in_chans"]),
        "layout": "NCHW float32, RGB scaled to [0, 1] then (x - mean) / std",
        "trained": src.trained,
        "opset": opset,
        "precision": precision,
        **(extra or {}),
    }


def onnx_model_bytes(model: torch.nn.Module, size: int, in_chans: int, *, opset: int, dynamic_batch: bool,
                     batch: int = 1) -> bytes:  # fmt: skip
    """The TorchScript-traced ONNX graph of ``model`` at ``size`` px: input ``input``, output ``logits``."""
    x = torch.zeros(batch, in_chans, size, size)
    buf = io.BytesIO()
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer's warnings are about Python-side shape checks that are constant for a fixed input size
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)  # fmt: skip
    return buf.getvalue()


def with_metadata(model_bytes: bytes, record: dict[str, Any]) -> bytes:
    import onnx

    proto = onnx.load_from_string(model_bytes)
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(record)
    proto.doc_string = f"litezoo {record['model_name']} ({record['precision']})"
    proto.producer_name = "litezoo"
    return proto.SerializeToString()


def check_inputs(src: Source, n: int, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """Inputs for the self-check: test images of the run's data, else random normal ones (and why)."""
    if src.data:
        try:
            x, _ = dataset_arrays(src, "test", n)
            return x[:n], f"{len(x[:n])} test images of {src.data}"
        except Exception as exc:  # noqa: BLE001 — the check still runs, on random inputs, and says why
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            src.notes.append(f"test images unavailable ({reason}); self-check on random inputs")
    size, c = int(src.meta["image_size"]), int(src.meta["in_chans"])
    x = np.random.default_rng(seed).standard_normal((n, c, size, size), dtype=np.float32)
    return x, f"{n} random N(0, 1) inputs"


def compare_logits(reference: np.ndarray, candidate: np.ndarray, tolerance: float = LOGIT_TOLERANCE) -> dict:
    """Max |difference| and top-1 agreement (percent) of two (N, K) logit arrays.

    Agreement counts the inputs whose reference top-2 margin exceeds 2 x ``tolerance``: closer than that the
    two classes are a tie within the numerical tolerance (an untrained net's logits are ~1e-6 apart).
    """
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    top2 = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else np.zeros((len(reference), 2))
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    same = reference.argmax(1) == candidate.argmax(1)
    agree = 100.0 * float(np.mean(same[decisive])) if decisive.any() else None
    return {"max_abs_logit_diff": diff, "top1_agreement": agree, "decisive_inputs": int(decisive.sum()),
            "top1_agreement_all": 100.0 * float(np.mean(same))}


def check_passed(check: dict) -> bool:
    return check["max_abs_logit_diff"] <= LOGIT_TOLERANCE and check["top1_agreement"] in (100.0, None)


def torch_logits(model: torch.nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).float().numpy()
                               for i in range(0, len(x), batch)])  # fmt: skip


def ort_session(model: bytes | str | os.PathLike, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_logits(session, x: np.ndarray, batch: int = 64) -> np.ndarray:
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch
    out = []
    for i in range(0, len(x), step):
        part = x[i : i + step]
        pad = (fixed - len(part)) if fixed else 0
        if pad:
            part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), np.float32)])
        out.append(session.run(None, {inp.name: part})[0][: len(part) - pad])
    return np.concatenate(out)


def export_onnx(
    target: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    size: int | None = None,
    data: str | None = None,
    check_images: int = CHECK_IMAGES,
    download: bool = True,
) -> dict[str, Any]:
    """Export a run / checkpoint / weights file / registry name to ONNX and check it against PyTorch.

    The check runs ONNX Runtime on ``check_images`` inputs (the run's test images, or random ones for a bare
    model) and compares with PyTorch: max |logit difference| must be <= 1e-4 and top-1 must agree on every
    input, else WorkError and nothing is written. Returns the report (path, check numbers, metadata).
    """
    if not 7 <= opset <= 20:
        raise InputError(f"--opset must be 7 to 20 for the TorchScript exporter, got {opset}")
    src = load_source(target, size=size, data=data)
    src.download = download
    meta = src.meta
    out = Path(out) if out else _default_out(src, ".onnx")
    start = time.perf_counter()
    record = metadata_record(src, opset=opset, extra={"dynamic_batch": dynamic_batch})
    raw = onnx_model_bytes(src.model, int(meta["image_size"]), int(meta["in_chans"]), opset=opset,
                           dynamic_batch=dynamic_batch, batch=1)  # fmt: skip
    blob = with_metadata(raw, record)
    x, what = check_inputs(src, check_images)
    session = ort_session(blob)
    check = compare_logits(torch_logits(src.model, x), ort_logits(session, x))
    check.update(inputs=what, tolerance=LOGIT_TOLERANCE)
    check["passed"] = check_passed(check)
    if not check["passed"]:
        raise WorkError(f"the ONNX graph disagrees with PyTorch on {what}: max |logit diff| "
                        f"{check['max_abs_logit_diff']:.3g} (tolerance {LOGIT_TOLERANCE}), top-1 agreement "
                        f"{check['top1_agreement']}%; nothing written")  # fmt: skip
    atomic_write_bytes(blob, out)
    return {"format": "onnx", "path": str(out), "bytes": len(blob), "model_name": meta["model_name"],
            "image_size": meta["image_size"], "opset": opset, "dynamic_batch": dynamic_batch,
            "check": check, "metadata": record, "notes": src.notes,
            "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip


def _default_out(src: Source, suffix: str) -> Path:
    path = Path(src.target)
    if path.is_dir():
        return path / f"model{suffix}"
    if path.exists():
        return path.with_suffix(suffix)
    return Path(f"{src.meta['model_name']}{suffix}")


def openvino_available() -> tuple[bool, str]:
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return False, f"openvino is not installed ({exc}); install the deploy extra: pip install 'litezoo[deploy]'"
    return True, ""


def save_openvino(ov_model, xml_path: Path, record: dict[str, Any]) -> Path:
    """Write IR (.xml + .bin) so a reader never sees a half-written pair: both go to a temp folder, then move."""
    import openvino as ov

    ov_model.set_rt_info(json.dumps(record), [METADATA_KEY])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=".ov-") as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    return xml_path


def export_openvino(
    target: str | os.PathLike, out: str | os.PathLike | None = None, **onnx_options: Any
) -> dict[str, Any]:
    """OpenVINO IR converted from the checked ONNX graph, itself checked against PyTorch on the same inputs."""
    ok, why = openvino_available()
    if not ok:
        raise InputError(why)
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="litezoo-export-") as tmp:
        report = export_onnx(target, Path(tmp) / "model.onnx", **onnx_options)
        src = load_source(target, size=onnx_options.get("size"), data=onnx_options.get("data"))
        src.download = onnx_options.get("download", True)
        ov_model = ov.convert_model(report["path"])
        out = Path(out) if out else _default_out(src, ".xml")
        if out.suffix != ".xml":
            raise InputError(f"OpenVINO IR is an .xml + .bin pair: name the .xml file, got {out}")
        x, what = check_inputs(src, onnx_options.get("check_images", CHECK_IMAGES))
        compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = np.concatenate([compiled(x[i : i + 1])[0] for i in range(len(x))]) if not onnx_options.get(
            "dynamic_batch") else compiled(x)[0]  # fmt: skip
        check = compare_logits(torch_logits(src.model, x), got)
        check.update(inputs=what, tolerance=LOGIT_TOLERANCE, precision_hint="f32")
        check["passed"] = check_passed(check)
        if not check["passed"]:
            raise WorkError(f"the OpenVINO model disagrees with PyTorch on {what}: max |logit diff| "
                            f"{check['max_abs_logit_diff']:.3g}, top-1 agreement {check['top1_agreement']}%")
        save_openvino(ov_model, out, report["metadata"])
    return {**report, "format": "openvino", "path": str(out), "bin": str(out.with_suffix(".bin")),
            "bytes": out.stat().st_size + out.with_suffix(".bin").stat().st_size, "check": check,
            "onnx_check": report["check"]}  # fmt: skip


