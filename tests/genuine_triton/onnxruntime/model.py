"""TEST SCAFFOLDING ONLY: a Python-based Triton backend named ``onnxruntime``.

Triton's C++ onnxruntime backend cannot be installed on the CPU test machines (the only Triton binary
there is the one inside the ``nvidia-pytriton`` wheel, which ships the python backend alone). Triton lets a
backend be a directory holding a ``model.py`` (its "Python-based backends"), so genuine Triton can load
the unmodified ``platform: "onnxruntime_onnx"`` models of model_repository/ through this file. Production
uses Triton's real onnxruntime backend; nothing here is part of stylecast.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        filename = self.config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("SHIM_ORT_THREADS", "0"))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in self.config["input"]]
        self.outputs = [o["name"] for o in self.config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = {}
                for name in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:
                        feeds[name] = tensor.as_numpy()
                wanted = [o.name() if hasattr(o, "name") else o for o in (request.requested_output_names() or [])]
                names = wanted or self.outputs
                values = self.session.run(names, feeds)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(v)) for n, v in zip(names, values)]))
            except Exception as e:  # the request fails, the model goes on
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
        return responses
