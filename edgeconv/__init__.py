"""edgeconv: Keras image models -> proven-correct TFLite and ONNX artifacts for phones.

The Python API mirrors the CLI: ``edgeconv.export(source, ...)``, ``edgeconv.validate(folder, ...)``, with typed
options (``edgeconv.ExportOptions``, ``edgeconv.ValidationOptions``); the zoo is ``edgeconv.models`` and the data
loaders are ``edgeconv.calibration``. Names are resolved lazily, so ``import edgeconv`` stays instant (TensorFlow is
imported by the functions that need it).
"""
__version__ = "0.1.0"

_LAZY = {
    "export": ("edgeconv.pipeline.export", "export"),
    "ExportResult": ("edgeconv.pipeline.export", "ExportResult"),
    "validate": ("edgeconv.verify.validate", "validate"),
    "ValidationReport": ("edgeconv.verify.validate", "ValidationReport"),
    "ExportOptions": ("edgeconv.options", "ExportOptions"),
    "ValidationOptions": ("edgeconv.options", "ValidationOptions"),
    "EdgeconvError": ("edgeconv.errors", "EdgeconvError"),
    "UsageError": ("edgeconv.errors", "UsageError"),
    "InternalError": ("edgeconv.errors", "InternalError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgeconv' has no attribute {name!r}")
