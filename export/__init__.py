"""ONNX export of style networks into a Triton model repository."""
