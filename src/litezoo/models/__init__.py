"""The model zoo: one family per file. Importing this package registers every variant."""

from litezoo.models import (  # noqa: F401  (imported for their @register_model side effects)
    efficientnet,
    ghostnet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    shufflenet_v1,
    shufflenet_v2,
    squeezenet,
    vgg,
    vgg_fast,
    vit,
)
