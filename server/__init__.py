"""The embedded server: Triton's protocol (KServe v2) over gRPC and HTTP, on ONNX Runtime, and the PyTorch sidecar.

Layers: transports with their codecs (:mod:`.servicer` and :mod:`.protobuf` for gRPC, :mod:`.http` for HTTP)
-> :mod:`.dataplane` (transport-free, on the :mod:`.inference` types; :mod:`.streams` is the one stream pump)
-> :mod:`.repository` / :mod:`.model` / :mod:`.scheduler` -> backends (:mod:`.onnx_backend`, :mod:`.upstream`,
the sidecar's :class:`~.sidecar.spec.SpecBackend`), found through :mod:`.registry`. :mod:`.errors` is the one
table of error kinds every transport answers with.
"""
