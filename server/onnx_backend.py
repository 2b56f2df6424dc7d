"""The ONNX backend and its two runtimes: ONNX Runtime (CUDA when onnxruntime-gpu and a GPU are present,
else CPU) and OpenVINO (CPU). Both are entries of ``registry``; a model picks one by parameter."""

from __future__ import annotations

import logging
import os
import queue
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from stylecast.contract import (
    KIND_PARAMETER,
    RUNTIME_PARAMETER,
    STYLE_MODEL_KIND,
    STYLE_WEIGHTS_INPUT,
    style_weights_problem,
)

from . import registry
from .backend import Backend
from .config import TensorSpec, autocomplete, check_against_graph
from .datatypes import datatype_of, from_openvino, from_ort, numpy_dtype
from .errors import InvalidArgument, ServerError, Status

log = logging.getLogger(__name__)

def _ort_spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, from_ort(arg.type), shape)


def _tensorrt_options(config: mc.ModelConfig) -> dict | None:
    """The ONNX Runtime TensorRT provider options of the config's ``tensorrt`` accelerator, if any."""
    for acc in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if acc.name == "tensorrt":
            opts: dict = {}
            for k, v in acc.parameters.items():
                if k == "precision_mode":
                    opts["trt_fp16_enable"] = v.upper() == "FP16"
                elif k == "max_workspace_size_bytes":
                    opts["trt_max_workspace_size"] = int(v)
                else:
                    opts[k] = {"true": True, "false": False}.get(v.lower(), v)
            return opts
    return None


def _providers(config: mc.ModelConfig) -> list:
    """Execution providers as Triton's onnxruntime backend would choose them: KIND_CPU stays on the CPU,
    KIND_GPU needs a GPU, KIND_AUTO takes CUDA when present; the TensorRT accelerator comes first when
    onnxruntime-gpu has it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    kinds = {g.kind for g in config.instance_group}
    gpu = "CUDAExecutionProvider" in available and os.environ.get("STYLECAST_DISABLE_CUDA") != "1"
    if mc.ModelInstanceGroup.KIND_GPU in kinds and not gpu:
        raise ServerError(f"instance_group of model '{config.name}' asks for KIND_GPU but no GPU is available "
                          "(install onnxruntime-gpu on a GPU machine, or use KIND_CPU / KIND_AUTO)",
                          Status.UNAVAILABLE)
    if not gpu or kinds == {mc.ModelInstanceGroup.KIND_CPU}:
        return ["CPUExecutionProvider"]
    providers: list = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = _tensorrt_options(config)
    if trt is not None and "TensorrtExecutionProvider" in available:
        providers.insert(0, ("TensorrtExecutionProvider", trt))
    elif trt is not None:
        log.warning("model '%s' asks for TensorRT, which this onnxruntime lacks: using CUDA", config.name)
    return providers


def warmup_feeds(config: mc.ModelConfig, sample, warmup_dir: Path) -> dict[str, np.ndarray]:
    """The inputs of one ``model_warmup`` sample (random, zero or file data, with the batch dimension);
    files are read from the model's ``warmup/`` folder, as Triton does."""
    rng = np.random.default_rng(0)
    feeds = {}
    for name, spec in sample.inputs.items():
        dtype = numpy_dtype(datatype_of(spec.data_type))
        shape = ([max(1, sample.batch_size)] if config.max_batch_size > 0 else []) + list(spec.dims)
        if spec.HasField("input_data_file"):
            raw = (warmup_dir / spec.input_data_file).read_bytes()
            feeds[name] = np.frombuffer(raw, dtype).reshape(shape)
        elif spec.random_data and dtype.kind in "iu":
            feeds[name] = rng.integers(0, 256 if dtype.itemsize == 1 else 100, shape).astype(dtype)
        elif spec.random_data:
            feeds[name] = rng.random(shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype)
    return feeds




class OrtSession:
    """One ONNX Runtime InferenceSession on the providers the config asks for."""

    def __init__(self, path: Path, config: mc.ModelConfig, providers: list) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = os.environ.get("STYLECAST_ORT_THREADS")
        if threads:
            opts.intra_op_num_threads = int(threads)
        self._session = ort.InferenceSession(str(path), opts, providers=providers)
        self.device = self._session.get_providers()[0]

    def run(self, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(outputs, feeds)

    def inputs(self) -> list[TensorSpec]:
        return [_ort_spec(a) for a in self._session.get_inputs()]

    def outputs(self) -> list[TensorSpec]:
        return [_ort_spec(a) for a in self._session.get_outputs()]


def ort_sessions(path: Path, config: mc.ModelConfig, count: int) -> list[OrtSession]:
    providers = _providers(config)
    return [OrtSession(path, config, providers) for _ in range(count)]


class OpenVinoSession:
    """The OpenVINO runtime (CPU, fp32) on the same ONNX file. Dynamic shapes stay dynamic: a new image
    size does not recompile the model."""

    device = "OpenVINO CPU"

    def __init__(self, path: Path) -> None:
        import onnx
        import openvino as ov

        self._compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                    "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()
        # OpenVINO ports carry several names; the graph's own are the ones a config refers to.
        graph = onnx.load(str(path), load_external_data=False).graph
        weights = {t.name for t in graph.initializer}
        self._names = ([i.name for i in graph.input if i.name not in weights], [o.name for o in graph.output])

    def run(self, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer(feeds)
        ports = [self._compiled.output(n) for n in outputs] if outputs else list(self._compiled.outputs)
        return [np.asarray(result[p]) for p in ports]

    def inputs(self) -> list[TensorSpec]:
        return [_openvino_spec(n, self._compiled.input(n)) for n in self._names[0]]

    def outputs(self) -> list[TensorSpec]:
        return [_openvino_spec(n, self._compiled.output(n)) for n in self._names[1]]


def _openvino_spec(name: str, port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    return TensorSpec(name, from_openvino(port.get_element_type().get_type_name()), shape)


def openvino_sessions(path: Path, config: mc.ModelConfig, count: int) -> list:
    """OpenVINO on CPU hosts; where the config gets a GPU, ONNX Runtime's CUDA provider serves instead."""
    if _providers(config) != ["CPUExecutionProvider"]:
        log.info("model '%s' asks for OpenVINO but runs on a GPU here: using ONNX Runtime", config.name)
        return ort_sessions(path, config, count)
    try:
        return [OpenVinoSession(path) for _ in range(count)]
    except ImportError as e:
        raise ServerError(f"model '{config.name}' asks for the OpenVINO runtime: pip install openvino",
                          Status.UNAVAILABLE) from e


def _runtime(config: mc.ModelConfig) -> registry.Runtime:
    value = config.parameters[RUNTIME_PARAMETER].string_value if RUNTIME_PARAMETER in config.parameters else ""
    value = value or os.environ.get("STYLECAST_RUNTIME", registry.DEFAULT_RUNTIME)
    run = registry.runtime(value)
    if run is None:
        raise ServerError(f"model '{config.name}': parameter '{RUNTIME_PARAMETER}' must be one of "
                          f"{registry.runtime_names()}, got {value!r}", Status.INVALID_ARGUMENT)
    return run


class OnnxRuntimeBackend(Backend):
    """One session per instance in ``instance_group``, from the model's runtime; requests take a free one."""

    platform = "onnxruntime_onnx"
    model_file = "model.onnx"

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """A style model's ``style_weights`` must be a blend the contract allows (the graph has no check)."""
        kind = self.config.parameters[KIND_PARAMETER].string_value if KIND_PARAMETER in self.config.parameters else ""
        if kind == STYLE_MODEL_KIND and STYLE_WEIGHTS_INPUT in inputs:
            problem = style_weights_problem(inputs[STYLE_WEIGHTS_INPUT])
            if problem:
                raise InvalidArgument(f"{problem} for model '{self.config.name}'")

    def load(self) -> None:
        path = self.version_dir / (self.config.default_model_filename or self.model_file)
        if not path.exists():
            raise ServerError(f"unable to find '{path}' for model '{self.config.name}'", Status.NOT_FOUND)
        count = sum(g.count or 1 for g in self.config.instance_group) or 1
        open_sessions = _runtime(self.config)
        try:
            sessions = open_sessions(path, self.config, count)
        except ServerError:
            raise
        except Exception as e:  # runtimes raise their own exception types for bad graphs
            raise ServerError(f"failed to load '{path}': {e}", Status.INVALID_ARGUMENT) from e
        ins, outs = sessions[0].inputs(), sessions[0].outputs()
        autocomplete(self.config, ins, outs)
        if not self.config.instance_group:
            self.config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
        check_against_graph(self.config, ins, outs)
        self._pool: queue.Queue = queue.Queue()
        for sess in sessions:
            self._warm_up(sess)
            self._pool.put(sess)
        log.info("loaded %s (%s) with %d instance(s) on %s", self.config.name, path, count, sessions[0].device)

    def _warm_up(self, session) -> None:
        for sample in self.config.model_warmup:
            feeds = warmup_feeds(self.config, sample, self.version_dir.parent / "warmup")
            for _ in range(max(1, sample.count)):
                session.run(None, feeds)
            log.info("model '%s' warm-up '%s' done", self.config.name, sample.name)

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
