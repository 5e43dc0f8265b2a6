"""litezoo: lightweight image-classification networks — build them, train them fast, measure them, ship them."""

from typing import Any

# The registry (and so torch) loads on first use, not on `import litezoo`: the torch-free deployment path
# (litezoo.runtime: numpy, Pillow, ONNX Runtime) must import on an edge box where torch is not installed.
_REGISTRY_EXPORTS = ("create_model", "list_models", "model_info", "register_model")


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_EXPORTS:
        from litezoo import registry

        return getattr(registry, name)
    if name == "load_weights":  # litezoo.weights: litezoo, torchvision and megvii layouts
        from litezoo.weights import load_weights

        return load_weights
    raise AttributeError(f"module 'litezoo' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "load_weights", "model_info", "register_model", "__version__"]
