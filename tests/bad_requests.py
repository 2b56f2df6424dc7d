"""The bad-request table shared by the embedded server's error tests and the conformance suite: each row
is (case, model, inputs, infer kwargs, expected status, expected text)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient


def raw_input(name, datatype, shape, data: bytes):
    """An input whose raw bytes may disagree with its declared shape (tritonclient would refuse to build it)."""
    t = grpcclient.InferInput(name, shape, datatype)
    t._raw_content = data
    t._input.ClearField("contents")
    return t


F = np.zeros((1, 16), np.float32)


def good(name):
    t = grpcclient.InferInput(name, [1, 16], "FP32")
    t.set_data_from_numpy(F)
    return t


def typed(name, arr, dt):
    t = grpcclient.InferInput(name, list(arr.shape), dt)
    t.set_data_from_numpy(arr)
    return t


BAD = [
    ("unknown model", "nope", lambda: [good("INPUT0"), good("INPUT1")], {}, "NOT_FOUND",
     "Request for unknown model: 'nope' is not found"),
    ("unknown version", "add_sub", lambda: [good("INPUT0"), good("INPUT1")], {"model_version": "7"}, "NOT_FOUND",
     "Request for unknown model: 'add_sub' version 7 is not found"),
    ("non-numeric version", "add_sub", lambda: [good("INPUT0"), good("INPUT1")], {"model_version": "x"},
     "INVALID_ARGUMENT", "invalid model version 'x'"),
    ("model failed to load", "broken", lambda: [good("INPUT0")], {}, "NOT_FOUND", "has no available versions"),
    ("wrong datatype", "add_sub", lambda: [typed("INPUT0", F.astype(np.int32), "INT32"), good("INPUT1")], {},
     "INVALID_ARGUMENT", "inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'"),
    ("wrong shape", "add_sub", lambda: [typed("INPUT0", np.zeros((1, 8), np.float32), "FP32"), good("INPUT1")], {},
     "INVALID_ARGUMENT", "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [-1,16], got [1,8]"),
    ("wrong rank", "add_sub", lambda: [typed("INPUT0", np.zeros((16,), np.float32), "FP32"), good("INPUT1")], {},
     "INVALID_ARGUMENT", "unexpected shape for input 'INPUT0'"),
    ("byte count mismatch", "add_sub", lambda: [raw_input("INPUT0", "FP32", [1, 16], b"\0" * 60), good("INPUT1")],
     {}, "INVALID_ARGUMENT", "input byte size mismatch for input 'INPUT0'. Expected 64, got 60"),
    ("missing input", "add_sub", lambda: [good("INPUT0")], {}, "INVALID_ARGUMENT",
     "missing required input(s) ['INPUT1']"),
    ("unknown input", "add_sub", lambda: [good("INPUT0"), good("INPUT1"), good("INPUT9")], {}, "INVALID_ARGUMENT",
     "unexpected inference input 'INPUT9' for model 'add_sub'"),
    ("unknown output", "add_sub", lambda: [good("INPUT0"), good("INPUT1")],
     {"outputs": [grpcclient.InferRequestedOutput("OUTPUT7")]}, "INVALID_ARGUMENT",
     "unexpected inference output 'OUTPUT7' for model 'add_sub'"),
    ("batch above max", "add_sub", lambda: [typed("INPUT0", np.zeros((9, 16), np.float32), "FP32"),
                                            typed("INPUT1", np.zeros((9, 16), np.float32), "FP32")], {},
     "INVALID_ARGUMENT", "inference request batch-size must be <= 8 for 'add_sub'"),
    ("empty tensor", "add_sub", lambda: [typed("INPUT0", np.zeros((0, 16), np.float32), "FP32"),
                                         typed("INPUT1", np.zeros((0, 16), np.float32), "FP32")], {},
     "INVALID_ARGUMENT", "has no elements"),
    ("batch sizes disagree", "add_sub",
     lambda: [typed("INPUT0", np.zeros((2, 16), np.float32), "FP32"), good("INPUT1")], {}, "INVALID_ARGUMENT",
     "batch size does not match other inputs for 'add_sub'"),
    ("image as float", "tiny_style", lambda: [typed("image", np.zeros((1, 8, 8, 3), np.float32), "FP32"),
                                              typed("style_weights", np.ones((1, 3), np.float32), "FP32")], {},
     "INVALID_ARGUMENT", "inference input 'image' data-type is 'FP32', but model 'tiny_style' expects 'UINT8'"),
    ("image with 4 channels", "tiny_style", lambda: [typed("image", np.zeros((1, 8, 8, 4), np.uint8), "UINT8"),
                                                     typed("style_weights", np.ones((1, 3), np.float32), "FP32")],
     {}, "INVALID_ARGUMENT", "Expected [-1,-1,-1,3], got [1,8,8,4]"),
    ("style weights of wrong length", "tiny_style",
     lambda: [typed("image", np.zeros((1, 8, 8, 3), np.uint8), "UINT8"),
              typed("style_weights", np.ones((1, 5), np.float32), "FP32")], {}, "INVALID_ARGUMENT",
     "unexpected shape for input 'style_weights'"),
    ("unregistered shared memory", "add_sub", lambda: [_shm_input("nowhere"), good("INPUT1")], {},
     "NOT_FOUND", "Unable to find shared memory region: 'nowhere'"),
    ("malformed BYTES", "add_sub", lambda: [raw_input("INPUT0", "BYTES", [1, 16], b"\xff\xff\xff\x7f"), good("INPUT1")],
     {}, "INVALID_ARGUMENT", "malformed BYTES data for input 'INPUT0'"),
]


def _shm_input(region):
    t = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    t.set_shared_memory(region, 64)
    return t
