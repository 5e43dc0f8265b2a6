"""The model zoo: one family per file. Importing this package registers every variant."""

from litezoo.models import (  # noqa: F401  (imported for their @register_model side effects)
    efficientnet,
    mobilenet_v1,
    shufflenet_v1,
    shufflenet_v2,
    squeezenet,
    vgg,
    vgg_fast,
    vit,
)
