"""ONNX Runtime backend: CUDA when onnxruntime-gpu and a GPU are present, else CPU."""

from __future__ import annotations

import logging
import os
import queue

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .backend import Backend
from .config import TensorSpec, autocomplete, check_against_graph
from .errors import ServerError, Status

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64", "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES", "tensor(bfloat16)": "BF16",
}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), shape)


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available and os.environ.get("STYLECAST_DISABLE_CUDA") != "1":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """One ONNX Runtime session per instance in ``instance_group``; requests take a free one."""

    platform = "onnxruntime_onnx"
    model_file = "model.onnx"

    def load(self) -> None:
        import onnxruntime as ort

        path = self.version_dir / (self.config.default_model_filename or self.model_file)
        if not path.exists():
            raise ServerError(f"unable to find '{path}' for model '{self.config.name}'", Status.NOT_FOUND)
        providers = _providers()
        count = sum(g.count or 1 for g in self.config.instance_group) or 1
        opts = ort.SessionOptions()
        threads = os.environ.get("STYLECAST_ORT_THREADS")
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            sessions = [ort.InferenceSession(str(path), opts, providers=providers) for _ in range(count)]
        except Exception as e:  # ORT raises its own exception types for bad graphs
            raise ServerError(f"failed to load '{path}': {e}", Status.INVALID_ARGUMENT) from e
        s = sessions[0]
        ins, outs = [_spec(a) for a in s.get_inputs()], [_spec(a) for a in s.get_outputs()]
        autocomplete(self.config, ins, outs)
        if not self.config.instance_group:
            self.config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
        check_against_graph(self.config, ins, outs)
        self._pool: queue.Queue = queue.Queue()
        for sess in sessions:
            self._pool.put(sess)
        log.info("loaded %s (%s) with %d instance(s) on %s", self.config.name, path, count,
                 s.get_providers()[0])

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str], parameters: dict,
              emit=None) -> dict[str, np.ndarray]:
        sess = self._pool.get()
        try:
            result = sess.run(outputs, inputs)
        finally:
            self._pool.put(sess)
        return dict(zip(outputs, result))

    def unload(self) -> None:
        self._pool = queue.Queue()
