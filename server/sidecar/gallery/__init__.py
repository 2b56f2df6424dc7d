"""Gallery: techniques that read activations of a gallery of photos indexed once (k nearest neighbours, PCA /
t-SNE maps, maximally activating patches, first-layer filters). ``specs`` declares the served techniques,
``index`` caches the gallery's features and finds the patches."""

from .specs import SPECS

__all__ = ["SPECS"]
