"""One module per family; importing this package registers every model."""
from . import (  # noqa: F401
    alexnet, densenet, efficientnet, googlenet, inception, lenet, mobilenet, resnet, shufflenet, squeezenet, vgg,
    vit, xception,
)
