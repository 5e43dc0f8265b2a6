"""predict's pipeline against an older commit's, interleaved in one process (relative figures on a shared CPU).

    litezoo export shufflenet_v2_x1_0 --dynamic-batch --out sn2.onnx
    python benchmarks/predict_pipeline.py sn2.onnx ../shared/data/dogs-vs-cats/valid --images 128 \
        --old 9619f34 --configs old:ort:2:1 new:ort:1:2 new:ort:2:2 old:openvino:2:1 new:openvino:1:2

A config is CODE:RUNTIME:THREADS:LANES (CODE old = litezoo.runtime of commit --old, loaded from git; THREADS 0
= the runtime's default; LANES is predict's --parallel, ignored by old code). Each config runs --repeats
times, interleaved with the others, so other jobs' load hits all of them alike. Prints images/s (wall,
decode included) and CPU ms per image (process time: less sensitive to other jobs than wall time).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def load_old(commit: str):
    code = subprocess.run(["git", "show", f"{commit}:src/litezoo/runtime.py"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="old-runtime-")) / "old_runtime.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("old_runtime", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_runtime"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("photos")
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--old", help="commit whose litezoo.runtime the 'old' configs use")
    p.add_argument("--configs", nargs="+", default=["new:ort:1:2", "new:ort:2:1", "new:ort:0:2"])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)

    import litezoo.runtime as new

    old = load_old(args.old) if args.old else None
    files, _ = new.list_images([args.photos])
    files = files[:: max(1, len(files) // args.images)][: args.images]
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for cfg in args.configs:
            code, runtime, threads, lanes = cfg.split(":")
            threads_or_none, lanes_n = int(threads) or None, int(lanes)
            t0 = time.process_time()
            if code == "old":
                if old is None:
                    raise SystemExit("an 'old' config needs --old COMMIT")
                clf = old.OnnxClassifier(args.model, threads=threads_or_none, runtime=runtime, batch=args.batch_size)
                r = old.predict_files(clf, files, batch_size=args.batch_size)
            else:
                clf = new.OnnxClassifier(args.model, threads=threads_or_none, runtime=runtime, batch=args.batch_size,
                                         streams=lanes_n)  # fmt: skip
                r = new.predict_files(clf, files, batch_size=args.batch_size, parallel=lanes_n)
            cpu_ms = 1e3 * (time.process_time() - t0) / len(r.predictions)
            results.setdefault(cfg, []).append((len(r.predictions) / r.seconds, cpu_ms))
    print(f"{len(files)} images, batch {args.batch_size}, load average {os.getloadavg()[0]:.1f} at the end")
    for cfg, runs in results.items():
        print(f"{cfg:22s} " + "  ".join(f"{ips:7.1f} img/s {cpu:6.2f} cpu-ms/img" for ips, cpu in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
