"""How an artifact is run: one Runner protocol for Keras, LiteRT and onnxruntime (runners), timing (timing), the bench command's library side (bench)."""
