"""edgeconv: Keras image models -> proven-correct TFLite and ONNX artifacts for phones."""
__version__ = "0.1.0"
