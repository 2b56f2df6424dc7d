"""``learn_style``: the server job of ``stylecast add-style``. A painting in, the next version of a multi-style
model of this server's repository out, which the server then serves without a restart.

It writes into the repository and takes minutes of CPU, so a server offers it only when started with
``--allow-learning``. It runs in the optimization slots, streams step, loss and a preview of the new style on a
training photo, stops on cancel or deadline (leaving the repository as it was), and checks the model and style
names like every name from the wire.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import Cancelled, InvalidArgument, NotFound
from .spec import Param, Spec, Tensor, image, pixels, scalar

log = logging.getLogger(__name__)

NAME = "learn_style"
MAX_PAINTING_SIDE = 4096


def spec(repository, steps_default: int) -> Spec:
    """The technique, bound to one server's repository (a ``ModelRepository``)."""
    params = (
        Param("model", str, "starter8", 1, 64, "multi-style model of this server to add the style to"),
        Param("name", str, "my_style", 1, 64, "the new style's name (letters, digits, '_', '-')"),
        Param("steps", int, steps_default, 1, 5000, "training steps of the new style's rows"),
        Param("image_size", int, 192, 64, 512, "training crop size"),
        Param("batch_size", int, 4, 1, 16, "crops per step"),
        Param("lr", float, 1e-2, 1e-5, 1.0, "learning rate of the new rows"),
        Param("preview_every", int, 10, 1, 5000, "stream a preview image every k steps"),
        Param("seed", int, 0, 0, 2**31 - 1, "random seed"),
    )
    outputs = (image("image"), scalar("steps"), scalar("version"), Tensor("styles", mc.TYPE_STRING, (1,)),
               scalar("step"), scalar("loss", mc.TYPE_FP32))

    def run(inputs: dict[str, np.ndarray], p: dict, progress) -> dict[str, np.ndarray]:
        return learn(repository, inputs["painting"], p, progress)

    return Spec(NAME, "teach a served multi-style model a new painting (only its new normalization rows train) "
                "and serve the model's next version", (image("painting"),), outputs, params, run,
                decoupled=True, family="optimization")


def _check(repository, p: dict, painting: np.ndarray) -> tuple[str, str]:
    """What add_style cannot say in the server's terms: an unknown model is NOT_FOUND, and the painting's size
    is bounded. The style name and the model's styles are checked by add_style itself, before any work."""
    from stylecast.export.styles import check_name

    try:
        model = check_name(p["model"], "model name")  # before it becomes a path
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    if repository.root is None or not (repository.root / model / "config.pbtxt").is_file():
        raise NotFound(f"Request for unknown model: '{model}' is not a model of this server's repository")
    if painting.ndim != 3 or min(painting.shape[:2]) < 16 or max(painting.shape[:2]) > MAX_PAINTING_SIDE:
        raise InvalidArgument(f"input 'painting' must be an H x W x 3 image of 16 to {MAX_PAINTING_SIDE} px a side")
    return model, p["name"]


def learn(repository, painting: np.ndarray, p: dict, progress) -> dict[str, np.ndarray]:
    from stylecast.export.styles import Stopped, add_style

    model, name = _check(repository, p, painting)
    last = {"image": torch.zeros(1, 3, 8, 8)}

    def on_step(step: int, losses: dict, preview) -> bool:
        if step % p["preview_every"] == 0 or step == p["steps"]:
            last["image"] = preview()
        return progress(step, float(losses["total"]), last["image"])

    with tempfile.TemporaryDirectory(prefix="stylecast-learn-") as tmp:
        path = Path(tmp) / "painting.png"  # the name from the wire never becomes a path
        Image.fromarray(painting).save(path)
        try:
            change = add_style(path, model, repository.root, name, p["steps"], out=Path(tmp) / "run",
                               progress=False, on_step=on_step, image_size=p["image_size"],
                               batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"])
        except Stopped as e:
            raise Cancelled(f"Cancelled: {e}") from e
        except (ValueError, FileNotFoundError) as e:
            raise InvalidArgument(str(e)) from e
    repository.reload(model)
    log.info("learn_style: %s version %d serves %s", model, change.version, ", ".join(change.styles))
    return {"image": pixels(last["image"].cpu()), "steps": np.array([change.steps], np.int32),
            "version": np.array([change.version], np.int32),
            "styles": np.array([",".join(change.styles).encode()], np.object_)}
