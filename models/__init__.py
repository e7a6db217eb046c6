"""edgeconv's model zoo: the classic CNN line (and ViT) for Keras 3, with a timm-style registry."""
from .preprocessing import CAFFE, MINUS1_1, RAW_0_255, TORCH, UNIT, Preprocessing
from .pretrained import Pretrained, imagenet_classes
from .registry import (SENSITIVE_ACTIVATIONS, ModelInfo, UnknownModelError, check_build, create_model, is_model,
                       list_models, model_info, register_model, suggest, zoo_rows)

__all__ = ["create_model", "check_build", "list_models", "model_info", "is_model", "register_model", "suggest",
           "ModelInfo", "UnknownModelError", "zoo_rows", "Preprocessing", "SENSITIVE_ACTIVATIONS", "RAW_0_255", "UNIT",
           "MINUS1_1", "TORCH", "CAFFE", "Pretrained", "imagenet_classes"]
