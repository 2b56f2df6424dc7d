"""The model repository: Triton's folder layout, model control modes (none, explicit, poll), model states."""

from __future__ import annotations

import copy
import enum
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from . import registry
from .config import read_config, select_versions
from .errors import InvalidArgument, NotFound, ServerError, Status, Unavailable, shorten, unknown_model
from .model import ModelVersion

log = logging.getLogger(__name__)


class ControlMode(str, enum.Enum):
    NONE = "none"
    EXPLICIT = "explicit"
    POLL = "poll"


class State(str, enum.Enum):
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass
class ModelEntry:
    name: str
    state: State = State.UNAVAILABLE
    reason: str = ""
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    config: mc.ModelConfig | None = None
    fingerprint: tuple = ()
    failed_fingerprint: tuple = ()  # files that failed to load (poll mode does not retry them until they change)


@dataclass(frozen=True)
class Declared:
    """A model declared in code: its config, its versions and the backend that builds them."""

    config: mc.ModelConfig
    versions: tuple[int, ...]
    backend: str


_VERSION = re.compile(r"-?[0-9]{1,18}")


def parse_version(name: str, version: str) -> int:
    """A version from the wire: ASCII digits only (``str.isdigit`` also takes '²'), at most 18 of them."""
    if not _VERSION.fullmatch(version):
        raise InvalidArgument(f"invalid model version '{shorten(version)}' for model '{shorten(name)}': "
                              "give a version number such as 1, or none for the latest")
    return int(version)


def _fingerprint(model_dir: Path) -> tuple:
    return tuple(sorted((str(p.relative_to(model_dir)), p.stat().st_mtime_ns, p.stat().st_size)
                        for p in model_dir.rglob("*") if p.is_file()))


class ModelRepository:
    """Owns every model's lifecycle. Thread-safe; load failures never affect other models."""

    def __init__(self, root: str | Path | None, mode: ControlMode = ControlMode.NONE,
                 startup_models: list[str] | None = None) -> None:
        self.root = Path(root) if root else None
        self.mode = ControlMode(mode)
        self.backends: dict[str, registry.BackendFactory] = {}  # this repository's own, over the registry's
        self._models: dict[str, ModelEntry] = {}
        self._lock = threading.RLock()
        self._declared: dict[str, Declared] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._startup = startup_models

    # --- discovery -----------------------------------------------------------------------------

    def model_dirs(self) -> dict[str, Path]:
        if self.root is None or not self.root.is_dir():
            return {}
        return {p.name: p for p in sorted(self.root.iterdir())
                if p.is_dir() and not p.name.startswith(".")
                and ((p / "config.pbtxt").exists() or any(c.name.isdigit() for c in p.iterdir()))}

    def known(self) -> set[str]:
        """Every model name this repository holds: its folders and the models declared in code."""
        return set(self.model_dirs()) | set(self._declared)

    def add_backend(self, name: str, factory: registry.BackendFactory) -> None:
        """A backend of this repository alone, over the registry's: one that needs this server's state
        (the sidecar's optimization slots, the upstream's connection)."""
        self.backends[name] = factory

    def declare(self, config: mc.ModelConfig, versions: tuple[int, ...] = (1,), backend: str = "") -> None:
        """A model that lives in code, not in the folder (the sidecar's techniques, an upstream's models). It is
        built as a folder model is: the backend named by ``backend`` (default: the config's platform/backend)
        gets a copy of the config and, per version, the path its folder would have (not read)."""
        self._declared[config.name] = Declared(config, tuple(versions), backend or config.platform or config.backend)

    def start(self) -> None:
        if self.mode == ControlMode.EXPLICIT:
            names = list(self._startup or [])
            names += [n for n in self._declared if n not in names]
        else:
            names = list(self.model_dirs()) + list(self._declared)
        for n in names:
            try:
                self._load(n)
            except ServerError:
                pass  # marked UNAVAILABLE with its reason; every other model keeps serving
        if self.mode == ControlMode.POLL:
            self._poller = threading.Thread(target=self._poll_loop, name="repository-poll", daemon=True)
            self._poller.start()

    # --- lifecycle -----------------------------------------------------------------------------

    def _factory(self, name: str, kind: str) -> registry.BackendFactory:
        factory = registry.backend(kind, self.backends)
        if factory is None:
            served = sorted(set(registry.backend_names()) | set(self.backends))
            raise InvalidArgument(f"unable to load model '{name}': unsupported platform/backend '{kind}' "
                                  f"(served: {', '.join(served)})")
        return factory

    def _build(self, name: str) -> tuple[mc.ModelConfig, dict[int, ModelVersion]]:
        """Every chosen version of a folder or declared model, through the one backend its config names."""
        declared = self._declared.get(name)
        if declared is not None:
            cfg, kind, chosen = declared.config, declared.backend, list(declared.versions)
            model_dir = (self.root or Path()) / name
        else:
            model_dir = self.model_dirs().get(name)
            if model_dir is None:
                raise unknown_model(name)
            cfg = read_config(model_dir)
            kind = cfg.platform or cfg.backend
            available = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
            chosen = select_versions(cfg, available)
            if not chosen:
                raise InvalidArgument(f"unable to load model '{name}': no version folder matches its "
                                      f"version_policy (found {sorted(available)})")
        factory = self._factory(name, kind)
        versions: dict[int, ModelVersion] = {}
        try:
            for v in chosen:
                backend = factory(copy.deepcopy(cfg), model_dir / str(v))
                backend.load()
                versions[v] = ModelVersion(backend, v)
        except BaseException:
            for model in versions.values():
                model.close()
            raise
        return versions[max(versions)].config, versions

    def _load(self, name: str) -> None:
        with self._lock:
            entry = self._models.setdefault(name, ModelEntry(name))
            old = dict(entry.versions)
            entry.state = State.LOADING if not old else entry.state
        dirs = self.model_dirs()
        fp: tuple = ()
        try:
            fp = _fingerprint(dirs[name]) if name in dirs else ()
            cfg, versions = self._build(name)
        except Exception as e:  # noqa: BLE001 - a model that fails to load must not affect the others
            msg = e.message if isinstance(e, ServerError) else f"{type(e).__name__}: {e}"
            log.error("failed to load model '%s': %s", name, msg)
            with self._lock:
                entry.failed_fingerprint = fp
                if not old:
                    entry.state, entry.reason = State.UNAVAILABLE, msg
                else:  # the versions loaded before keep serving; the index says why the new files did not load
                    entry.reason = (f"failed to load the changed model files, still serving versions "
                                    f"{sorted(old)} loaded before: {msg}")
            if isinstance(e, ServerError) and e.status is Status.NOT_FOUND and name not in dirs:
                with self._lock:
                    self._models.pop(name, None)
                raise
            raise InvalidArgument(f"failed to load '{name}': {msg}") from e
        with self._lock:
            entry.versions, entry.config, entry.fingerprint = versions, cfg, fp
            entry.state, entry.reason, entry.failed_fingerprint = State.READY, "", ()
        for model in old.values():
            model.close()
        log.info("model '%s' ready (versions %s)", name, sorted(versions))

    def reload(self, name: str) -> None:
        """Read a model's folder again now, in any control mode: a server job (learn_style) wrote its next
        version. The versions loaded before keep serving if the new files fail to load."""
        self._load(name)

    def _require_explicit(self) -> None:
        if self.mode != ControlMode.EXPLICIT:
            raise Unavailable("explicit model load / unload is not allowed if polling is enabled"
                              if self.mode == ControlMode.POLL else
                              "explicit model load / unload is not allowed in model control mode 'none'")

    def load(self, name: str) -> None:
        self._require_explicit()
        self._load(name)

    def unload(self, name: str, timeout: float = 60.0) -> None:
        """Stop accepting requests for ``name``; requests already accepted still finish."""
        self._require_explicit()
        with self._lock:
            entry = self._models.get(name)
            if entry is None:
                raise unknown_model(name)
            versions = dict(entry.versions)
            entry.state, entry.reason, entry.versions = State.UNLOADING, "unloading", {}
        for model in versions.values():
            model.close(timeout)
        with self._lock:
            entry.state, entry.reason = State.UNAVAILABLE, "unloaded"
        log.info("model '%s' unloaded", name)

    # --- lookup --------------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        with self._lock:
            entry = self._models.get(name)
            if entry is None:
                raise unknown_model(name)
            if entry.state != State.READY or not entry.versions:
                reason = f": {entry.reason}" if entry.reason else ""
                raise NotFound(f"Request for unknown model: '{name}' has no available versions{reason}")
            if not version:
                return entry.versions[max(entry.versions)]
            model = entry.versions.get(parse_version(name, version))
            if model is None:
                raise unknown_model(name, version)
            return model

    def entry(self, name: str) -> ModelEntry:
        with self._lock:
            entry = self._models.get(name)
            if entry is None:
                raise unknown_model(name)
            return entry

    def index(self) -> list[tuple[str, str, str, str]]:
        """(name, version, state, reason) for every model in the folder or loaded, as RepositoryIndex."""
        rows = []
        with self._lock:
            names = sorted(set(self.model_dirs()) | set(self._models) | set(self._declared))
            for n in names:
                e = self._models.get(n)
                if e is None:
                    rows.append((n, "", "", ""))
                elif e.versions:
                    rows += [(n, str(v), e.state.value, e.reason) for v in sorted(e.versions)]
                else:
                    rows.append((n, "", e.state.value, e.reason))
        return rows

    def ready_versions(self) -> list[ModelVersion]:
        with self._lock:
            return [model for e in self._models.values() if e.state == State.READY for model in e.versions.values()]

    def all_ready(self) -> bool:
        with self._lock:
            return all(e.state == State.READY for e in self._models.values())

    # --- polling -------------------------------------------------------------------------------

    def poll_once(self) -> None:
        dirs = self.model_dirs()
        for name, d in dirs.items():
            e = self._models.get(name)
            fp = _fingerprint(d)
            if e is None or (e.fingerprint != fp and e.failed_fingerprint != fp):
                try:
                    self._load(name)
                except ServerError:
                    pass
        for name in [n for n in list(self._models) if n not in dirs and n not in self._declared]:
            e = self._models.get(name)
            if e and e.versions:
                with self._lock:
                    versions, e.versions = e.versions, {}
                    e.state, e.reason = State.UNAVAILABLE, "removed from the repository"
                for model in versions.values():
                    model.close()

    def _poll_loop(self, interval: float = 2.0) -> None:
        while not self._stop.wait(interval):
            self.poll_once()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            entries = list(self._models.values())
        for e in entries:
            for model in e.versions.values():
                model.close(timeout=10)
            e.versions = {}
