"""``litezoo predict``: label images with an exported model (ONNX Runtime; no torch needed for a .onnx file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from litezoo.cli.common import add_common, emit, human_out, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="label images with an exported model: top-k classes and probabilities (torch-free for .onnx)",
        description=(
            "Label image files or folders with an exported .onnx model (or a run folder: its model.onnx,\n"
            "exported first if missing). Preprocessing comes from the file's metadata: shorter side resized,\n"
            "centre crop, mean/std. A folder of class folders is labelled: the accuracy is printed and --grid\n"
            "draws the images titled with the prediction, blue when right, red when wrong. Unreadable files are\n"
            "named and skipped. Images mostly smaller than half the model's input side are refused (exit 2)\n"
            "unless --allow-upscale. The runtime (ONNX Runtime, or OpenVINO where installed) and its thread count\n"
            "default to the fastest for this model, batch and CPU, the runtimes' own defaults included (timed\n"
            "once the way predict runs: --parallel batches at once, each decoded and run on its own thread;\n"
            "cached in the litezoo cache folder). Needs only numpy, Pillow and onnxruntime for a .onnx file."
        ),
        epilog=(
            "example:\n"
            "  litezoo predict shufflenet.onnx photos/ --topk 3\n"
            "  litezoo predict runs/dogs_vs_cats ../shared/data/dogs-vs-cats/valid --grid grid.png --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="RUN_DIR|FILE.onnx", help="exported model file, or a run folder")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER", help="image files and/or folders")
    p.add_argument("--topk", type=positive_int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--grid", metavar="PNG", help="write a grid of the images titled with the predictions")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per model call (default 32)")
    p.add_argument("--parallel", type=positive_int, metavar="N",
                   help="batches in flight at once, each decoded and run on its own thread (default: usable cores)")
    p.add_argument("--runtime", choices=["auto", "ort", "openvino"], default="auto",
                   help="auto (default): the fastest of ONNX Runtime / OpenVINO (if installed) x 1 thread, all "
                        "cores or the runtime default, measured once for this model, batch and CPU and cached; "
                        "ort; openvino")
    p.add_argument("--threads", type=positive_int, help="runtime threads (given: no measuring; default ort)")
    p.add_argument("--allow-upscale", action="store_true", help="resize images smaller than half the input")
    p.add_argument("--limit-print", type=int, default=20, help="images listed in the text output (default 20)")
    add_common(p)
    p.set_defaults(func=run)


def _model_file(target: str) -> Path:
    path = Path(target)
    if path.is_dir():
        onnx_path = path / "model.onnx"
        if not onnx_path.is_file():  # a run folder without an export: export it now (this part needs torch)
            from litezoo.deploy.export import export_onnx

            print(f"exporting {path} to {onnx_path} first", file=sys.stderr)
            export_onnx(path, onnx_path, dynamic_batch=True)
        return onnx_path
    return path


def run(args: argparse.Namespace) -> int:
    from litezoo.machine import usable_cpus
    from litezoo.runtime import OnnxClassifier, check_sizes, choose_runtime, list_images, predict_files, save_grid

    path = _model_file(args.model)
    # bad input fails here, in one line, before any runtime is timed: the file (readable ONNX with litezoo
    # metadata), the image list (an empty folder) and the image sizes against the model input
    side = OnnxClassifier(path).image_size
    files, _ = list_images(args.inputs)
    if not args.allow_upscale:
        check_sizes(files, side)
    batch = min(args.batch_size, len(files))  # a handful of images is one call: time the choice at that size
    lanes = max(1, min(args.parallel or usable_cpus(), -(-len(files) // batch)))
    if args.runtime == "auto" and not args.threads:
        choice = choose_runtime(path, batch, lanes=lanes, log=lambda m: print(m, file=sys.stderr, flush=True))
    else:
        runtime = "ort" if args.runtime == "auto" else args.runtime
        choice = {"runtime": runtime, "threads": args.threads, "cached": None}
    clf = OnnxClassifier(path, threads=choice["threads"], runtime=choice["runtime"], batch=batch,
                         streams=lanes)
    result = predict_files(clf, args.inputs, topk=args.topk, batch_size=batch,
                           parallel=lanes, allow_upscale=args.allow_upscale,
                           keep_images=bool(args.grid))  # fmt: skip
    report = {"model": str(path), "model_name": clf.meta["model_name"], "runtime": choice, **result.to_dict()}
    if args.grid:
        report["grid"] = str(save_grid(result, args.grid))
    out = human_out(args)
    for bad, why in result.skipped.items():
        print(f"skipped {bad}: {why}", file=sys.stderr)
    lines = []
    for pred in result.predictions[: args.limit_print]:
        tops = ", ".join(f"{c} {100 * p:.1f}%" for c, p in pred.top)
        mark = "" if pred.correct is None else ("  ok" if pred.correct else f"  WRONG (is {pred.label})")
        lines.append(f"{pred.path}: {tops}{mark}")
    if 0 < args.limit_print < len(result.predictions):
        lines.append(f"... {len(result.predictions) - args.limit_print} more (--json lists all)")
    n = len(result.predictions)
    lines.append(f"{n} images in {result.seconds:.2f} s ({n / result.seconds:.0f} images/s, decode included; "
                 f"{choice['runtime']}, {choice['threads'] or 'default'} thread(s) x {lanes} lane(s)), "
                 f"{len(result.skipped)} skipped")  # fmt: skip
    if result.accuracy is not None:
        lines.append(f"accuracy {result.accuracy:.2f}% on the labelled images")
    if args.grid:
        lines.append(f"wrote {report['grid']}")
    if not args.json:
        print("\n".join(lines), file=out)
    emit(args, report)
    return 0
