"""``litezoo export``: a trained run (or a bare model) to ONNX / OpenVINO IR, checked against PyTorch."""

from __future__ import annotations

import argparse

from litezoo.cli.common import add_common, emit, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX or OpenVINO IR with its preprocessing, checked against PyTorch",
        description=(
            "Export the model of a run folder / .pt / .safetensors file (or a registry name, with random weights)\n"
            "to ONNX with the preprocessing in the file's metadata (input size, resize, mean/std, class names,\n"
            "model name, litezoo version). Before writing, ONNX Runtime is run on the run's test images (random\n"
            "inputs for a bare model) and compared with PyTorch: max |logit diff| <= 1e-4 and top-1 agreement\n"
            "100%, else nothing is written (exit 1). --format openvino converts the checked ONNX graph to IR."
        ),
        epilog=(
            "example:\n"
            "  litezoo export runs/shufflenet --format onnx --out shufflenet.onnx\n"
            "  litezoo export shufflenet_v2_x1_0 --dynamic-batch --json\n"
            "  litezoo export runs/shufflenet --format openvino --out ir/shufflenet.xml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="RUN_DIR|MODEL", help="run folder, .pt, .safetensors, or a registry name")
    p.add_argument("--format", dest="fmt", choices=["onnx", "openvino"], default="onnx", help="default onnx")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--dynamic-batch", action="store_true", help="batch dimension left free (default: fixed 1)")
    p.add_argument("--size", type=positive_int, help="input side for a bare model (default: its design size)")
    p.add_argument("--data", help="dataset for the self-check images (default: the run's own data)")
    p.add_argument("--check-images", type=positive_int, default=64, help="inputs the self-check uses (default 64)")
    p.add_argument("--out", help="output file (.onnx, or .xml for openvino; default next to the run/model)")
    p.add_argument("--no-download", action="store_true", help="never download a named dataset")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.deploy.export import export_onnx, export_openvino

    fn = export_onnx if args.fmt == "onnx" else export_openvino
    report = fn(args.target, args.out, opset=args.opset, dynamic_batch=args.dynamic_batch, size=args.size,
                data=args.data, check_images=args.check_images, download=not args.no_download)  # fmt: skip
    check = report["check"]
    agree = "n/a (all logits tie within tolerance)" if check["top1_agreement"] is None else f"{check['top1_agreement']:.1f}%"
    lines = [
        f"wrote {report['path']} ({report['bytes'] / 1e6:.1f} MB, {report['model_name']}, {report['image_size']} px, "
        f"opset {report['opset']})",
        f"self-check on {check['inputs']}: max |logit diff| {check['max_abs_logit_diff']:.2e} "
        f"(<= {check['tolerance']:g}), top-1 agreement {agree}: {'passed' if check['passed'] else 'FAILED'}",
        *[f"note: {n}" for n in report["notes"]],
    ]
    emit(args, report, human="\n".join(lines))
    return 0
