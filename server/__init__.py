"""The embedded server: Triton's gRPC protocol (KServe v2) over ONNX Runtime and the PyTorch sidecar.

Layers: :mod:`.servicer` (thin gRPC transport) -> :mod:`.dataplane` (transport-free) ->
backends (:mod:`.onnx_backend`) with load / infer / unload.
"""
