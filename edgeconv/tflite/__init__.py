"""How a Keras trace becomes a .tflite: the converter per precision (convert), the verified int8 rewrite for XNNPACK (rewrite), what a .tflite holds (introspect)."""
