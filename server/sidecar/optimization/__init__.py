"""Optimization: techniques that optimize an image over the one render loop (``render``) and stream their
progress (class and feature visualization, fooling, DeepDream, feature inversion, Gram textures, Gatys).
``specs`` declares the served techniques, ``methods`` holds each objective and its loop settings."""

from .specs import SPECS

__all__ = ["SPECS"]
