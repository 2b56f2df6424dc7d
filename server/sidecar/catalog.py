"""Every technique by name: the one list the embedded server registers and the Triton python-backend
models are generated from. A technique is one :class:`~.spec.Spec` in its family's module."""

from __future__ import annotations

from .spec import BACKEND, Slots, Spec, SpecBackend


def specs() -> dict[str, Spec]:
    """name -> spec, over every family (imported here so that importing the catalog stays cheap)."""
    from . import attribution, gallery, optimization

    return {s.name: s for s in (*attribution.SPECS, *optimization.SPECS, *gallery.SPECS)}


def spec(name: str) -> Spec:
    known = specs()
    if name not in known:
        raise KeyError(f"no technique named {name!r}; known: {sorted(known)}")
    return known[name]


def build(name: str, slots: Slots | None = None) -> SpecBackend:
    """The loaded backend of one technique."""
    b = SpecBackend(spec(name), slots)
    b.load()
    return b


def register(repository, slots: Slots, allow_learning: bool = False) -> list[str]:
    """Declare every technique in a ModelRepository (loaded when the repository starts), served by the
    repository's own ``stylecast_sidecar`` backend; the decoupled ones share ``slots``, the server's limit on
    optimizations at once. ``allow_learning`` adds ``learn_style``, which writes new model versions into the
    repository."""
    served = dict(specs())
    if allow_learning:
        from stylecast.export.styles import ADD_STYLE_STEPS

        from . import learning

        learn = learning.spec(repository, ADD_STYLE_STEPS)
        served[learn.name] = learn
    repository.add_backend(BACKEND, lambda config, version_dir: SpecBackend(served[config.name], slots))
    for s in served.values():
        repository.declare(s.config())
    return list(served)
