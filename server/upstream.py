"""Models of an upstream KServe v2 server, served here by forwarding (``stylecast serve --upstream HOST:PORT``).

The split deployment of docs/deploy.md has Triton serve the style models on the GPU and the stylecast sidecar
serve the techniques and the studio. With ``--upstream`` the sidecar's index also lists every ready model of
the upstream server (one this server does not hold itself), with the upstream's own config; requests for them
are checked here against that config, then forwarded over gRPC with their parameters, and the upstream's
answer or error comes back as it gave it. The upstream may start later: until it answers, this server
retries in the background and serves its own models meanwhile.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .backend import Backend
from .errors import ServerError, Status

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0
BACKEND = "stylecast_upstream"  # the repository backend that forwards a model to the upstream
_BY_GRPC = {s.value.grpc.name: s for s in reversed(Status)}  # first row wins (DEADLINE_EXCEEDED, not 408)


def upstream_error(e: InferenceServerException, url: str) -> ServerError:
    """The upstream's error with its own status and message (INTERNAL when it gave none we know)."""
    code = (e.status() or "").rsplit(".", 1)[-1]
    status = _BY_GRPC.get(code, Status.UNAVAILABLE if code == "" else Status.INTERNAL)
    return ServerError(f"{e.message()} (from the upstream server {url})", status)


class UpstreamBackend(Backend):
    """One version of one upstream model; ``infer`` forwards (tritonclient's gRPC client is thread-safe)."""

    def __init__(self, config: mc.ModelConfig, client: tc.InferenceServerClient, url: str, version: int,
                 timeout: float) -> None:
        super().__init__(config, Path(url))
        self.platform = config.platform or config.backend
        self._client, self._url, self._version, self._timeout = client, url, version, timeout

    def load(self) -> None:
        """Nothing to load: the upstream holds the weights and has checked the config."""

    def check_parameters(self, parameters: dict) -> dict:
        return dict(parameters)  # forwarded as given; the upstream checks them (and they split batches here)

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str], parameters: dict,
              emit=None) -> dict[str, np.ndarray]:
        request = []
        for name, value in inputs.items():
            t = tc.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
            t.set_data_from_numpy(value)
            request.append(t)
        try:
            answer = self._client.infer(self.config.name, request, model_version=str(self._version),
                                        outputs=[tc.InferRequestedOutput(n) for n in outputs],
                                        parameters=parameters or None, client_timeout=self._timeout)
        except InferenceServerException as e:
            raise upstream_error(e, self._url) from None
        return {n: answer.as_numpy(n) for n in outputs}


class Upstream:
    """The upstream server: its ready models, declared in a repository for its ``stylecast_upstream`` backend."""

    def __init__(self, url: str, timeout: float = 120.0, max_message_mb: int = 64) -> None:
        limit = max_message_mb * 1024 * 1024
        self.url, self.timeout = url, timeout
        self.client = tc.InferenceServerClient(url, channel_args=[("grpc.max_receive_message_length", limit),
                                                                  ("grpc.max_send_message_length", limit)])
        self._stop = threading.Event()

    def models(self) -> dict[str, tuple[mc.ModelConfig, list[int]]]:
        """name -> (config, ready versions) of every ready, non-decoupled model of the upstream."""
        found: dict[str, tuple[mc.ModelConfig, list[int]]] = {}
        for m in self.client.get_model_repository_index(as_json=False).models:
            if m.state != "READY":
                continue
            if m.name not in found:
                cfg = self.client.get_model_config(m.name, as_json=False).config
                if cfg.model_transaction_policy.decoupled:
                    log.info("upstream %s: %s streams its answers; not forwarded", self.url, m.name)
                    continue
                found[m.name] = (cfg, [])
            if m.version:
                found[m.name][1].append(int(m.version))
        return found

    def register(self, repository, loaded: bool) -> list[str]:
        """Add the upstream's models that ``repository`` does not hold itself; ``loaded``: the repository has
        started, so load each one now."""
        repository.add_backend(BACKEND, lambda cfg, version_dir: UpstreamBackend(
            cfg, self.client, self.url, int(version_dir.name), self.timeout))
        own = repository.known()
        names = []
        for name, (cfg, versions) in self.models().items():
            if name in own:
                log.warning("upstream %s: %s is served here already; the local model wins", self.url, name)
                continue
            repository.declare(cfg, tuple(versions or [1]), BACKEND)
            names.append(name)
            if loaded:
                repository.reload(name)
        log.info("upstream %s: forwarding %s", self.url, ", ".join(names) or "no model")
        return names

    def attach(self, repository) -> list[str]:
        """Register now if the upstream answers; otherwise retry in the background until it does."""
        try:
            return self.register(repository, loaded=False)
        except InferenceServerException as e:
            log.warning("upstream %s does not answer yet (%s); retrying every %.0f s", self.url, e.message(),
                        RETRY_SECONDS)
        threading.Thread(target=self._retry, args=(repository,), name="upstream", daemon=True).start()
        return []

    def _retry(self, repository) -> None:
        while not self._stop.wait(RETRY_SECONDS):
            try:
                self.register(repository, loaded=True)
                return
            except (InferenceServerException, grpc.RpcError) as e:
                log.debug("upstream %s: %s", self.url, e)

    def close(self) -> None:
        self._stop.set()
        self.client.close()
