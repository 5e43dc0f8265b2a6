"""Deployment: ONNX / OpenVINO export with a self-check, int8 quantisation, and a runtime benchmark.

    from litezoo.deploy import export_onnx, quantize_run, bench
    export_onnx("runs/shufflenet", "shufflenet.onnx")            # checked against PyTorch on test images
    quantize_run("runs/shufflenet", "shufflenet.int8.onnx", calib=512, method="ort-qdq")

The torch-free side (prediction with ONNX Runtime, numpy and Pillow) is :mod:`litezoo.runtime`.
"""

from litezoo.deploy.export import export_onnx, export_openvino
from litezoo.deploy.quantize import quantize_run

__all__ = ["export_onnx", "export_openvino", "quantize_run"]
