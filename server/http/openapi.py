"""The HTTP API described as OpenAPI 3.0 (``/openapi.json``) and rendered at ``/docs`` by Swagger UI from the
``swagger-ui-bundle`` package (its static files and page template; no page code here).

:data:`ROUTES` documents every route :func:`.routes.build_app` serves; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path

from stylecast import __version__

JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


ERRORS = {str(code): _json(_ref("Error"), text) for code, text in (
    (400, "a client mistake: the message says what to fix"), (403, "a foreign Origin or Host"),
    (404, "unknown model or version"), (413, "over the body or JSON limit"), (415, "text/plain or a form body"),
    (503, "not ready, too many streams, or shutting down"))}
NO_BODY = {"200": {"description": "OK"}}

# path -> method -> (summary, request body schema or None, 200 answer)
ROUTES: dict[str, dict[str, tuple[str, dict | None, dict]]] = {
    "/v2/health/live": {"get": ("200 while the server runs", None, NO_BODY)},
    "/v2/health/ready": {"get": ("200 when every model is ready", None, NO_BODY)},
    "/v2": {"get": ("server metadata: name, version, extensions", None, {"200": _json(_ref("ServerMetadata"))})},
    "/v2/models/stats": {"get": ("statistics of every ready model (Triton's)", None,
                                 {"200": _json({"type": "object"})})},
    "/v2/repository/index": {"post": ("every model of the repository, with its state", _ref("IndexRequest"),
                                      {"200": _json({"type": "array", "items": _ref("IndexEntry")})})},
    "/v2/repository/models/{model}/load": {"post": ("load or reload a model (explicit mode)", {"type": "object"},
                                                    NO_BODY)},
    "/v2/repository/models/{model}/unload": {"post": ("unload a model (explicit mode)", None, NO_BODY)},
    "/v2/systemsharedmemory/status": {"get": ("registered system shared memory regions", None,
                                              {"200": _json({"type": "array", "items": _ref("Region")})})},
    "/v2/systemsharedmemory/region/{name}/status": {"get": ("one region", None,
                                                            {"200": _json({"type": "array",
                                                                           "items": _ref("Region")})})},
    "/v2/systemsharedmemory/region/{name}/register": {"post": ("register a POSIX shared memory object (key "
                                                               "'/name', inside /dev/shm)", _ref("Register"),
                                                               NO_BODY)},
    "/v2/systemsharedmemory/region/{name}/unregister": {"post": ("unregister one region", None, NO_BODY)},
    "/v2/systemsharedmemory/unregister": {"post": ("unregister every region", None, NO_BODY)},
}
_MODEL = {
    "": {"get": ("model metadata: inputs, outputs, versions", None, {"200": _json(_ref("ModelMetadata"))})},
    "/ready": {"get": ("200 when the model (version) is ready", None, NO_BODY)},
    "/config": {"get": ("the model's config (Triton's ModelConfig as JSON): style names in parameters.styles, "
                        "a technique's parameters as param.NAME", None, {"200": _json({"type": "object"})})},
    "/stats": {"get": ("the model's statistics", None, {"200": _json({"type": "object"})})},
    "/infer": {"post": ("inference. Tensors as JSON 'data', or as binary data after the JSON (Triton's binary "
                        "tensor extension: Content-Type application/octet-stream, header "
                        "Inference-Header-Content-Length = the JSON's byte length, each input's "
                        "parameters.binary_data_size), or in shared memory", _ref("InferenceRequest"),
                        {"200": _json(_ref("InferenceResponse"))})},
    "/generate": {"post": ("Triton's generate extension: JSON keys are the model's inputs (nested lists), "
                           "'parameters' its knobs; the final answer as flat JSON", {"type": "object"},
                           {"200": _json({"type": "object"})})},
    "/generate_stream": {"post": ("generate as server-sent events: one 'data: {...}' per progress response "
                                  "(step, loss, preview image), the result last, or a final {\"error\": ...}",
                                  {"type": "object"},
                                  {"200": {"description": "text/event-stream",
                                           "content": {"text/event-stream": {"schema": {"type": "string"}}}}})},
}
for _base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
    ROUTES.update({_base + suffix: methods for suffix, methods in _MODEL.items()})

_TENSOR = {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
           "datatype": {"type": "string", "example": "UINT8"}, "parameters": {"type": "object"}}
SCHEMAS = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
    "ServerMetadata": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                                        "extensions": {"type": "array", "items": {"type": "string"}}}},
    "ModelMetadata": {"type": "object", "properties": {"name": {"type": "string"}, "platform": {"type": "string"},
                                                       "versions": {"type": "array", "items": {"type": "string"}},
                                                       "inputs": {"type": "array", "items": {"type": "object"}},
                                                       "outputs": {"type": "array", "items": {"type": "object"}}}},
    "IndexRequest": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "IndexEntry": {"type": "object", "properties": {k: {"type": "string"} for k in ("name", "version", "state",
                                                                                   "reason")}},
    "Region": {"type": "object", "properties": {"name": {"type": "string"}, "key": {"type": "string"},
                                                "offset": {"type": "integer"}, "byte_size": {"type": "integer"}}},
    "Register": {"type": "object", "required": ["key", "byte_size"],
                 "properties": {"key": {"type": "string", "example": "/my_region"}, "offset": {"type": "integer"},
                                "byte_size": {"type": "integer"}}},
    "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape", "datatype"],
                                              "properties": {**_TENSOR, "data": {"type": "array", "items": {}}}}},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}},
    "InferenceResponse": {"type": "object", "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "object",
                                               "properties": {**_TENSOR, "data": {"type": "array", "items": {}}}}}}},
}


def document() -> dict:
    """The OpenAPI document of the routes in :data:`ROUTES`."""
    paths: dict = {}
    for path, methods in ROUTES.items():
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in ("model", "version", "name") if "{" + p + "}" in path]
        paths[path] = {}
        for method, (summary, body, answers) in methods.items():
            op = {"summary": summary, "parameters": params, "responses": {**answers, **ERRORS}}
            if body is not None:
                op["requestBody"] = {"content": {JSON: {"schema": body}}}
            paths[path][method] = op
    return {"openapi": "3.0.3",
            "info": {"title": "stylecast", "version": __version__,
                     "description": "KServe v2 inference protocol over HTTP/REST, as NVIDIA Triton serves it on "
                                    "port 8000, for the style models and the techniques. With --token, send "
                                    "'Authorization: Bearer TOKEN'."},
            "paths": paths, "components": {"schemas": SCHEMAS}}


def swagger_ui() -> tuple[Path, str] | None:
    """The Swagger UI assets folder and its page pointed at /openapi.json, or None without the package."""
    try:
        import jinja2
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    folder = Path(swagger_ui_path)
    page = jinja2.Template((folder / "index.j2").read_text()).render(openapi_spec_url="/openapi.json")
    return folder, page.replace('href="./', 'href="/docs/').replace('src="./', 'src="/docs/')
