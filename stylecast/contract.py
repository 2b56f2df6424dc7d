"""The wire contract, in one place: tensor names, datatypes and shapes shared by export, server, client.

Style models take ``image`` (UINT8 [-1, -1, 3], HWC RGB, batched) and, when they hold several
styles, ``style_weights`` (FP32 [N]); they return ``stylized`` (UINT8, same H and W). The style
names, in order, are the config parameter ``styles`` (comma-separated).
"""

from __future__ import annotations

IMAGE_INPUT = "image"
STYLE_WEIGHTS_INPUT = "style_weights"
STYLIZED_OUTPUT = "stylized"
STYLES_PARAMETER = "styles"
KIND_PARAMETER = "stylecast_kind"
STYLE_MODEL_KIND = "style"

IMAGE_DATATYPE = "UINT8"
WEIGHTS_DATATYPE = "FP32"
IMAGE_DIMS = (-1, -1, 3)
DEFAULT_MAX_BATCH_SIZE = 8


def parse_styles(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]
