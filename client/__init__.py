"""The stylecast client: one gRPC client (on tritonclient) for style models and techniques.

    from stylecast.client import Client
    with Client("127.0.0.1:8001") as c:
        out = c.stylize(image, "starry_night")
"""

from .aio import AsyncClient
from .core import Client, Explanation, ModelInfo
from .errors import StylecastError
from .imaging import blend_strength, preserve_color
from .techniques import GalleryView, LearnedStyle, NeuronExplanation, Optimized, Segmentation

__all__ = ["AsyncClient", "Client", "Explanation", "GalleryView", "LearnedStyle", "ModelInfo", "NeuronExplanation",
           "Optimized", "Segmentation", "StylecastError", "blend_strength", "preserve_color"]
