"""Every technique by name: the one list the embedded server registers and the Triton python-backend
models are generated from."""

from __future__ import annotations

from collections.abc import Callable

from .backend import SidecarBackend


def factories() -> dict[str, Callable[[], SidecarBackend]]:
    """name -> a function building the (not yet loaded) backend."""
    from . import activations, backend, iterative

    out: dict[str, Callable[[], SidecarBackend]] = {}
    for t in backend.TECHNIQUES:
        out[t.name] = lambda t=t: backend.TechniqueBackend(t)
    for cls in activations.BACKENDS:
        out[cls.NAME] = cls
    for it in iterative.TECHNIQUES:
        out[it.name] = lambda it=it: iterative.IterativeBackend(it)
    return out


def build(name: str) -> SidecarBackend:
    """The loaded backend of one technique."""
    make = factories().get(name)
    if make is None:
        raise KeyError(f"no technique named {name!r}; known: {sorted(factories())}")
    b = make()
    b.load()
    return b


def register(repository) -> list[str]:
    """Add every technique to a ModelRepository as a virtual model (loaded when the repository starts)."""
    from ..model import ModelVersion

    names = list(factories())
    for name in names:
        repository.add_virtual(name, lambda name=name: [ModelVersion(build(name), 1)])
    return names
