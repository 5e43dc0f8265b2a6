"""int8 post-training static quantisation, calibrated on training images, with a per-layer sensitivity ranking.

Methods:
  ort-qdq   ONNX Runtime, QuantizeLinear/DequantizeLinear pairs around each op (the format ORT fuses into
            int8 kernels and other runtimes read)
  ort-qop   ONNX Runtime, QLinearConv/QLinearMatMul operators
  openvino  NNCF post-training quantisation of the OpenVINO model (IR .xml/.bin)

Weights int8 (per tensor, or per output channel with ``per_channel``), activations uint8 (asymmetric, the
u8s8 form x86 VNNI kernels take). The ranking quantises one layer at a time and measures how often the
model's top-1 then differs from fp32 on held-out TRAINING images (not the test set, so the test accuracy
reported after keeping layers in fp32 stays an honest number).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from litezoo.deploy.export import (
    DEFAULT_OPSET,
    metadata_record,
    onnx_model_bytes,
    openvino_available,
    ort_logits,
    ort_session,
    save_openvino,
    with_metadata,
)
from litezoo.deploy.source import Source, dataset_arrays, load_source
from litezoo.errors import InputError, WorkError
from litezoo.fsutil import atomic_write_bytes

METHODS = ("ort-qdq", "ort-qop", "openvino", "pt2e")
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")  # the layers the ranking and --exclude speak of
DEPTHWISE = "depthwise"  # --exclude keyword: every grouped conv with one input channel per group
RANK_IMAGES = 500  # held-out training images the sensitivity ranking is measured on
CALIBRATIONS = ("minmax", "percentile", "entropy")  # ONNX Runtime's activation-range methods
DEAD_WEIGHT_RATIO = 100.0  # a conv output channel whose max |weight| is this many times the conv's median ...
DEAD_TOLERANCE = 1e-6  # ... and whose output is constant (to this, relative) on every calibration image is dead


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(1) == labels))


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an in-memory float32 array."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 32):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        part = self.x[self.i : self.i + self.batch]
        self.i += self.batch
        return {self.name: part}

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return (len(self.x) + self.batch - 1) // self.batch


def conv_layers(model_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The quantisable nodes of an ONNX graph: name, op type and whether it is a depthwise conv."""
    import onnx

    proto = onnx.load(str(model_path))
    inits = {t.name: t for t in proto.graph.initializer}
    layers = []
    for node in proto.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        depthwise = node.op_type == "Conv" and group > 1 and w is not None and list(w.dims)[1] == 1
        layers.append({"name": node.name, "op": node.op_type, "depthwise": bool(depthwise)})
    return layers


def resolve_excluded(layers: list[dict[str, Any]], patterns: Sequence[str]) -> list[str]:
    """Node names matching ``patterns`` (shell-style, or the keyword 'depthwise'); an unmatched pattern is an error."""
    names: list[str] = []
    for pattern in patterns:
        if pattern == DEPTHWISE:
            hit = [layer["name"] for layer in layers if layer["depthwise"]]
        else:
            hit = [layer["name"] for layer in layers if fnmatch.fnmatchcase(layer["name"], pattern)]
        if not hit:
            some = ", ".join(layer["name"] for layer in layers[:4])
            raise InputError(f"--exclude {pattern!r} matches no quantisable layer (they are named like {some}, ...; "
                             f"or use '{DEPTHWISE}')")  # fmt: skip
        names += [n for n in hit if n not in names]
    return names


def _check_calibration(calibration: str) -> None:
    if calibration not in CALIBRATIONS:
        raise InputError(f"unknown calibration {calibration!r}: choose from {', '.join(CALIBRATIONS)}")


@contextlib.contextmanager
def _quiet_logging():
    """ORT's quantiser logs per-layer notes through the root logger, and its histogram calibrations (percentile,
    entropy) print() their progress: keep the first quiet and the second off stdout (``--json`` owns it)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(level)


class OrtQuantizer:
    """Calibrates once (the ranges are cached in a file), then quantises any subset of layers cheaply."""

    def __init__(self, fp32_path: Path, calib: np.ndarray, workdir: Path, *, qop: bool, per_channel: bool,
                 calibration: str = "minmax"):  # fmt: skip
        _check_calibration(calibration)
        self.fp32_path, self.calib, self.workdir = fp32_path, calib, workdir
        self.qop, self.per_channel, self.calibration = qop, per_channel, calibration
        self.cache = workdir / "calibration.json"
        self.input_name = ort_session(fp32_path).get_inputs()[0].name

    def quantize(self, out: Path, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        with _quiet_logging():
            quantize_static(
                str(self.fp32_path), str(out), _Reader(self.input_name, self.calib),
                quant_format=QuantFormat.QOperator if self.qop else QuantFormat.QDQ,
                op_types_to_quantize=None, per_channel=self.per_channel, reduce_range=False,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_quantize=list(only) if only is not None else None, nodes_to_exclude=list(exclude),
                calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                  "entropy": CalibrationMethod.Entropy}[self.calibration],
                calibration_cache_path=str(self.cache),
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )  # fmt: skip
        return out


def fold_dead_channels(fp32_path: Path, calib: np.ndarray, out: Path, *, ratio: float = DEAD_WEIGHT_RATIO,
                       tolerance: float = DEAD_TOLERANCE) -> tuple[Path, list[dict[str, Any]]]:  # fmt: skip
    """Replace each *dead* conv output channel by its constant: weights 0, bias = the value it always outputs.

    A channel is dead when its max |weight| is ``ratio`` times the conv's median over channels AND its output is
    the same on every pixel of every calibration image. This is what BN folding makes of a BN whose running
    variance collapsed (its input channel is a ReLU output that is always 0 -- a dead ReLU): gamma /
    sqrt(var + eps) turns its weights into 1e3-3e4 x the others (ShuffleNet V1's depthwise convs after a short
    run: 22 channels in 7 depthwise convs, max |weight| 29,580 against a median of 1.2). In fp32 the input is
    exactly 0 and nothing shows; in int8 a per-tensor weight scale follows that channel (232.9 there), so
    every other channel's weights round to 0, and any uint8 step of input noise on the channel is multiplied
    by the huge weight. Folding the channel to its bias is exact on the calibration images, so the fp32
    graph's answers do not change there (ShuffleNet V1: logits within 1.4e-6). Returns (path of the graph to
    quantise, [{"layer", "channels"}]); when no channel is dead the path is ``fp32_path`` itself.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(fp32_path))
    inits = {t.name: t for t in proto.graph.initializer}
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    candidates = []  # (node, weight, bias, channels with outlier weights)
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        w_name, b_name = node.input[1], node.input[2]
        if w_name not in inits or b_name not in inits or uses[w_name] > 1 or uses[b_name] > 1:
            continue
        w = numpy_helper.to_array(inits[w_name])
        per = np.abs(w.reshape(w.shape[0], -1)).max(1)
        median = float(np.median(per))
        outliers = np.flatnonzero(per > ratio * median) if median > 0 else np.array([], dtype=int)
        if len(outliers):
            candidates.append((node, w, numpy_helper.to_array(inits[b_name]), outliers))
    if not candidates:
        return fp32_path, []
    probe = onnx.load(str(fp32_path))
    del probe.graph.output[:]
    for node, *_ in candidates:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    session = ort_session(probe.SerializeToString())
    names = [node.output[0] for node, *_ in candidates]
    lo = [None] * len(names)
    hi = [None] * len(names)
    for i in range(0, len(calib), 64):
        for k, y in enumerate(session.run(names, {session.get_inputs()[0].name: calib[i : i + 64]})):
            y = y.astype(np.float64)
            mn, mx = y.min((0, 2, 3)), y.max((0, 2, 3))
            lo[k] = mn if lo[k] is None else np.minimum(lo[k], mn)
            hi[k] = mx if hi[k] is None else np.maximum(hi[k], mx)
    folded = []
    for k, (node, w, b, outliers) in enumerate(candidates):
        mid = (lo[k] + hi[k]) / 2
        dead = [int(c) for c in outliers if hi[k][c] - lo[k][c] <= tolerance * max(1.0, abs(mid[c]))]
        if not dead:
            continue
        w, b = w.copy(), b.copy()
        w[dead] = 0
        b[dead] = mid[dead].astype(b.dtype)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(w, node.input[1]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(b, node.input[2]))
        folded.append({"layer": node.name, "channels": dead})
    if not folded:
        return fp32_path, []
    onnx.save(proto, str(out))
    return out, folded


def rank_sensitivity(quantizer: OrtQuantizer, layers: list[dict[str, Any]], x: np.ndarray,
                     reference: np.ndarray, progress: Callable[[str], None] | None = None) -> list[dict]:  # fmt: skip
    """Quantise one layer at a time; cost = % of held-out images whose top-1 moves away from fp32's.

    Ties are broken by the mean squared logit error. Sorted worst first.
    """
    ranking = []
    for i, layer in enumerate(layers):
        path = quantizer.quantize(quantizer.workdir / "one.onnx", only=[layer["name"]])
        got = ort_logits(ort_session(path), x, batch=256)
        flips = 100.0 * float(np.mean(got.argmax(1) != reference.argmax(1)))
        mse = float(np.mean((got - reference) ** 2))
        ranking.append({**layer, "top1_flip_pct": round(flips, 3), "logit_mse": mse})
        if progress:
            progress(f"  [{i + 1}/{len(layers)}] {layer['name']}: {flips:.2f}% top-1 changed, logit mse {mse:.3g}")
    return sorted(ranking, key=lambda r: (-r["top1_flip_pct"], -r["logit_mse"]))


def openvino_quantize(fp32_path: Path, calib: np.ndarray, exclude: Sequence[str], out: Path, record: dict):
    import nncf
    import openvino as ov

    model = ov.convert_model(str(fp32_path))
    dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    scope = nncf.IgnoredScope(names=list(exclude)) if exclude else None
    kwargs = {"ignored_scope": scope} if scope else {}
    with contextlib.redirect_stdout(sys.stderr):  # NNCF draws progress bars: keep stdout for --json
        quantized = nncf.quantize(model, dataset, subset_size=len(calib), **kwargs)
    return save_openvino(quantized, out, record)


def openvino_logits(path: Path, x: np.ndarray, batch: int = 64, threads: int | None = None) -> np.ndarray:
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    return np.concatenate([compiled(x[i : i + batch])[0] for i in range(0, len(x), batch)])


def quantize_run(
    target: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    calib: int = 512,
    method: str = "ort-qdq",
    per_channel: bool = False,
    exclude: Sequence[str] = (),
    rank: bool = False,
    keep_fp32: int = 0,
    eval_limit: int | None = None,
    data: str | None = None,
    rank_images: int = RANK_IMAGES,
    progress: Callable[[str], None] | None = None,
    download: bool = True,
    calibration: str = "minmax",
) -> dict[str, Any]:
    """Quantise a trained run to int8 and report test top-1 before and after (see the module doc)."""
    if method not in METHODS:
        raise InputError(f"unknown --method {method!r}: choose from {', '.join(METHODS)}")
    if calib < 1:
        raise InputError(f"--calib must be a positive number of training images, got {calib}")
    if keep_fp32 < 0:
        raise InputError(f"--keep-fp32 must be >= 0, got {keep_fp32}")
    _check_calibration(calibration)
    if calibration != "minmax" and not method.startswith("ort-"):
        raise InputError(f"--calibration {calibration} is an ONNX Runtime method: use it with ort-qdq or ort-qop "
                         f"({method} sets its ranges itself)")  # fmt: skip
    if not method.startswith("ort-"):
        calibration = method  # what set the activation ranges, for the record
    if method == "openvino":
        ok, why = openvino_available()
        if not ok:
            raise InputError(why)
        try:
            import nncf  # noqa: F401
        except ImportError:
            raise InputError("--method openvino needs the nncf package (pip install nncf)") from None
    if method == "pt2e":
        ok, why = pt2e_available()
        if not ok:
            raise InputError(why)
        if rank or keep_fp32:
            raise InputError("--rank-sensitivity and --keep-fp32 rank ONNX layers: use them with --method ort-qdq "
                             "or ort-qop (pt2e takes --exclude with module names, or 'depthwise')")  # fmt: skip
        per_channel = True  # X86InductorQuantizer's default config: per-channel int8 weights
    say = progress or (lambda _msg: None)
    src = load_source(target, data=data)
    src.download = download
    if not src.trained:
        raise InputError(f"{target} is a bare model name: quantisation needs a trained run (its data calibrates)")
    start = time.perf_counter()
    # Calibration and ranking images: disjoint, both from the training split.
    need = calib + (rank_images if (rank or keep_fp32) else 0)
    x_train, _ = dataset_arrays(src, "train", need)
    order = np.random.default_rng(0).permutation(len(x_train))
    x_calib = x_train[order[:calib]]
    x_rank = x_train[order[calib:need]]
    x_test, y_test = dataset_arrays(src, "test", eval_limit)
    say(f"calibration: {len(x_calib)} training images; test: {len(x_test)} images")

    suffix = {"openvino": ".int8.xml", "pt2e": ".int8.pt2"}.get(method, ".int8.onnx")
    out = Path(out) if out else _default_int8_out(src, suffix)
    if method == "openvino" and out.suffix != ".xml":
        raise InputError(f"--method openvino writes OpenVINO IR: name an .xml file, got {out}")
    if method == "pt2e" and out.suffix != ".pt2":
        raise InputError(f"--method pt2e writes a torch.export program: name a .pt2 file, got {out}")
    if method not in ("openvino", "pt2e") and out.suffix != ".onnx":
        raise InputError(f"--method {method} writes ONNX: name an .onnx file, got {out}")

    with tempfile.TemporaryDirectory(prefix="litezoo-quant-") as tmp:
        work = Path(tmp)
        fp32_path = prepared_fp32(src, work)
        fp32_logits = ort_logits(ort_session(fp32_path), x_test, batch=256)
        before = top1(fp32_logits, y_test)
        dead: list[dict] = []
        q_source = fp32_path  # the graph ORT / NNCF quantise: dead channels folded to their constant (see there)
        if method != "pt2e":
            q_source, dead = fold_dead_channels(fp32_path, x_calib, work / "fp32.folded.onnx")
            if dead:
                say(f"folded {sum(len(d['channels']) for d in dead)} dead conv channels in {len(dead)} layers "
                    f"to their constant output")  # fmt: skip
        layers = torch_layers(src.model) if method == "pt2e" else conv_layers(fp32_path)
        excluded = resolve_excluded(layers, exclude)
        ranking: list[dict] = []
        kept: list[str] = []
        if rank or keep_fp32:
            say(f"ranking {len(layers)} layers on {len(x_rank)} held-out training images ...")
            ranker = OrtQuantizer(q_source, x_calib, work, qop=False, per_channel=per_channel, calibration=calibration)
            reference = ort_logits(ort_session(fp32_path), x_rank, batch=256)
            ranking = rank_sensitivity(ranker, layers, x_rank, reference, progress=say)
            kept = [r["name"] for r in ranking if r["name"] not in excluded][:keep_fp32]
        fp32_names = excluded + kept
        record = metadata_record(src, opset=DEFAULT_OPSET, precision="int8", extra={
            "quantization": {"method": method, "calibration_images": len(x_calib), "per_channel": per_channel,
                             "calibration": calibration, "fp32_layers": fp32_names,
                             "dead_channels_folded": dead}})  # fmt: skip
        if method == "openvino":
            openvino_quantize(q_source, x_calib, fp32_names, out, record)
            q_logits = openvino_logits(out, x_test)
        elif method == "pt2e":
            q_model = Pt2eModel(src.model, x_calib, exclude=fp32_names)
            q_logits = q_model.logits(x_test)  # inductor's compiled int8 graph: what the file runs as
            q_model.save(out, record)
        else:
            quantizer = OrtQuantizer(q_source, x_calib, work, qop=method == "ort-qop", per_channel=per_channel,
                                     calibration=calibration)
            q_path = quantizer.quantize(work / "int8.onnx", exclude=fp32_names)
            blob = with_metadata(q_path.read_bytes(), record)
            q_logits = ort_logits(ort_session(blob), x_test, batch=256)
            atomic_write_bytes(blob, out)
    after = top1(q_logits, y_test)
    if not np.isfinite(q_logits).all():
        raise WorkError("the quantised model produced non-finite logits")
    return {
        "path": str(out), "method": method, "model_name": src.meta["model_name"], "per_channel": per_channel,
        "calibration_images": len(x_calib), "calibration": calibration, "test_images": len(x_test),
        "data": src.data, "dead_channels_folded": dead,
        "top1_fp32": before, "top1_int8": after, "top1_change": after - before,
        "agreement_with_fp32": 100.0 * float(np.mean(q_logits.argmax(1) == fp32_logits.argmax(1))),
        "quantizable_layers": len(layers), "excluded": excluded, "kept_fp32": kept,
        "ranking": ranking, "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip


def prepared_fp32(src: Source, work: Path) -> Path:
    """The fp32 graph (dynamic batch) after ONNX Runtime's quantisation pre-processing (shape inference, fusions)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw = work / "fp32_raw.onnx"
    raw.write_bytes(onnx_model_bytes(src.model, int(src.meta["image_size"]), int(src.meta["in_chans"]),
                                     opset=DEFAULT_OPSET, dynamic_batch=True))  # fmt: skip
    prepared = work / "fp32.onnx"
    quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
    return prepared


def _default_int8_out(src: Source, suffix: str) -> Path:
    path = Path(src.target)
    if path.is_dir():
        return path / f"model{suffix}"
    return path.with_name(path.stem + suffix)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch 2 export quantisation (pt2e): torch.export -> X86InductorQuantizer -> inductor's int8 kernels


def pt2e_available() -> tuple[bool, str]:
    """(usable, why not): pt2e lives in the torchao package (torch 2.13 no longer has torch.ao.quantization.pt2e)."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer  # noqa: F401
    except ImportError as exc:
        return False, (f"--method pt2e needs the torchao package (pip install torchao): {exc}; this torch has no "
                       f"torch.ao.quantization.pt2e")  # fmt: skip
    return True, ""


def torch_layers(model) -> list[dict[str, Any]]:
    """The quantisable modules of a torch model (pt2e's --exclude names): module path, type, depthwise."""
    import torch.nn as nn

    layers = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            depthwise = isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.in_channels
            layers.append({"name": name, "op": type(mod).__name__, "depthwise": bool(depthwise)})
    return layers


class Pt2eModel:
    """A pt2e-quantised model: X86InductorQuantizer's static int8 graph (per-channel int8 weights, uint8
    activations), compiled by inductor with ``freezing`` so each dequantize -> conv -> quantize pattern becomes
    one oneDNN int8 convolution. Layers named in ``exclude`` (module paths) stay fp32. Fixed batch ``batch``:
    the graph is exported and compiled for one shape; shorter calls are padded."""

    def __init__(self, model, calib: np.ndarray, *, exclude: Sequence[str] = (), compile: bool = True,
                 batch: int = 32):  # fmt: skip
        import torch
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        self.batch, self.shape = batch, tuple(calib.shape[1:])  # (C, H, W)
        example = (torch.from_numpy(self._padded(calib[:batch])),)
        with torch.no_grad():
            graph = torch.export.export(model.eval(), example).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            for name in exclude:
                quantizer.set_module_name_qconfig(name, None)  # this module stays fp32
            prepared = prepare_pt2e(graph, quantizer)
            for i in range(0, len(calib), batch):
                prepared(torch.from_numpy(self._padded(calib[i : i + batch])))  # observers record the ranges
            self.graph = convert_pt2e(prepared)
        self.module = self.graph
        self.compiled = compile
        if compile:
            import torch._inductor.config as inductor_config

            with _inductor_freezing(inductor_config), torch.no_grad():
                self.module = torch.compile(self.graph)
                self.module(example[0])  # compile now, while freezing is on

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """``x`` repeated up to the fixed batch (real images, so calibration ranges are not skewed by padding)."""
        if len(x) == self.batch:
            return np.ascontiguousarray(x)
        return np.ascontiguousarray(np.take(x, np.arange(self.batch) % len(x), axis=0))

    def logits(self, x: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch):
                part = x[i : i + self.batch]
                out.append(self.module(torch.from_numpy(self._padded(part))).numpy()[: len(part)])
        return np.concatenate(out)

    def save(self, path: Path, record: dict[str, Any]) -> Path:
        """The quantised graph as an ExportedProgram file (.pt2, ``torch.export.load``; needs torchao imported),
        the litezoo record beside it as ``extra_files['litezoo.json']``."""
        import io
        import json

        import torch

        program = torch.export.export(self.graph, (torch.zeros(self.batch, *self.shape),))
        buf = io.BytesIO()
        torch.export.save(program, buf, extra_files={"litezoo.json": json.dumps(record)})
        return atomic_write_bytes(buf.getvalue(), path)


@contextlib.contextmanager
def _inductor_freezing(config):
    previous = config.freezing
    config.freezing = True  # restored after: no global setting changes behind the caller
    try:
        yield
    finally:
        config.freezing = previous
