"""litezoo: lightweight image-classification networks — build them, train them fast, measure them, ship them."""

from litezoo.registry import create_model, list_models, model_info, register_model

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "model_info", "register_model", "__version__"]
