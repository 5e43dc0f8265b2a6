"""``litezoo quantize``: int8 static quantisation of a trained run, test top-1 before and after."""

from __future__ import annotations

import argparse

from litezoo.cli.common import add_common, emit, human_out, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="int8 static quantisation calibrated on training images; test top-1 before/after",
        description=(
            "Quantise the model of a run to int8 (weights int8, activations uint8), calibrated on --calib\n"
            "training images, and report test top-1 of fp32 and int8 (ONNX Runtime, or OpenVINO for\n"
            "--method openvino). --rank-sensitivity quantises one layer at a time and ranks the layers by how\n"
            "often they change the top-1 answer on held-out training images; --keep-fp32 K keeps the K worst in\n"
            "fp32. --exclude takes node names (shell patterns) or the word 'depthwise'."
        ),
        epilog=(
            "example:\n"
            "  litezoo quantize runs/shufflenet --calib 512 --method ort-qdq --per-channel\n"
            "  litezoo quantize runs/effnet --calib 512 --exclude depthwise --json\n"
            "  litezoo quantize runs/mbv2 --calib 256 --rank-sensitivity --keep-fp32 3 --out mbv2.int8.onnx"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="RUN_DIR", help="run folder (or .pt / .safetensors beside its config.yaml)")
    p.add_argument("--calib", type=positive_int, default=512, help="calibration training images (default 512)")
    p.add_argument("--method", choices=["ort-qdq", "ort-qop", "openvino", "pt2e"], default="ort-qdq",
                   help="ort-qdq (default), ort-qop, openvino (NNCF) or pt2e (torch.export + X86InductorQuantizer, "
                        "needs torchao; writes .pt2)")
    p.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    p.add_argument("--calibration", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="how activation ranges are set from the calibration images (ONNX Runtime methods; default "
                        "minmax): percentile ignores the rare extreme activations that make minmax scales coarse")
    p.add_argument("--exclude", nargs="+", default=[], metavar="LAYER",
                   help="layers left in fp32: ONNX node names / shell patterns, or 'depthwise'")
    p.add_argument("--rank-sensitivity", action="store_true", help="rank the layers by their int8 cost")
    p.add_argument("--keep-fp32", type=int, default=0, metavar="K", help="keep the K most sensitive layers fp32")
    p.add_argument("--eval-limit", type=positive_int, help="test images to evaluate on (default: all)")
    p.add_argument("--data", help="dataset (default: the run's own data)")
    p.add_argument("--out", help="output file (.onnx; .xml for openvino; .pt2 for pt2e; default RUN_DIR/model.int8.*)")
    p.add_argument("--no-download", action="store_true", help="never download a named dataset")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from litezoo.deploy.quantize import quantize_run

    out = human_out(args)
    r = quantize_run(args.target, args.out, calib=args.calib, method=args.method, per_channel=args.per_channel,
                     calibration=args.calibration, exclude=args.exclude, rank=args.rank_sensitivity,
                     keep_fp32=args.keep_fp32,
                     eval_limit=args.eval_limit, data=args.data, download=not args.no_download,
                     progress=lambda msg: print(msg, file=out, flush=True))  # fmt: skip
    lines = []
    if r["ranking"]:
        lines.append("layer sensitivity (one layer int8 at a time; worst first):")
        for row in r["ranking"][:10]:
            lines.append(f"  {row['name']:<40} {row['op']:<6}{' dw' if row['depthwise'] else '   '}  "
                         f"top-1 changed {row['top1_flip_pct']:6.2f}%  logit mse {row['logit_mse']:.3g}")
    kept = r["excluded"] + r["kept_fp32"]
    lines += [
        f"{r['model_name']} {r['method']}{' per-channel' if r['per_channel'] else ''}, {r['calibration']} ranges: "
        f"calibrated on {r['calibration_images']} training images, tested on {r['test_images']}",
        f"top-1 fp32 {r['top1_fp32']:.2f}%  int8 {r['top1_int8']:.2f}%  ({r['top1_change']:+.2f} pt); "
        f"int8 agrees with fp32 on {r['agreement_with_fp32']:.1f}% of test images",
        f"kept in fp32: {', '.join(kept) if kept else 'none'} ({len(kept)} of {r['quantizable_layers']} layers)",
        f"wrote {r['path']}",
    ]
    emit(args, r, human="\n".join(lines))
    return 0
