"""Iterative techniques served as decoupled models: progress (step, loss, a preview every k steps)
streams over ModelStreamInfer, then the result. A cancelled stream or a passed deadline stops the
render loop at its next step and frees the worker. At most ``--max-optimizations`` run at once across
all of them (the rest wait for a slot, see ``spec.Slots``), so long jobs cannot starve the single-pass
techniques. One spec each, at the end."""

from __future__ import annotations

import numpy as np
import torch
from stylecast.nets.perceptual import LOSS_NETWORKS, default_layers
from torch.nn import functional as F
from tritonclient.grpc import model_config_pb2 as mc

from ...errors import InvalidArgument
from ..networks import cached_loss_network, load_classifier
from ..neurons import EFFICIENTNET_LAYERS, LAYERS, NEURON_LAYERS
from ..spec import Param, Spec, Tensor, choice, image, pixels, scalar, text
from . import methods

DEFAULT_CLASS = 130  # flamingo: pink birds on water read well at 128 px
MAX_SIDE = 512  # larger inputs are resized: a limit on pixels per request
NETWORKS = tuple(LOSS_NETWORKS)


def _network_param(default: str, why: str) -> Param:
    return choice("loss_network", default, NETWORKS, why)


def _net(p: dict, layers: tuple[str, ...] | None = None):
    """The request's loss network; VGG19 and torchvision VGG16 only where their files are on disk."""
    try:
        return cached_loss_network(p["loss_network"], layers)
    except (FileNotFoundError, ValueError) as e:
        raise InvalidArgument(f"parameter 'loss_network' = {p['loss_network']!r}: {e}") from e


def common(steps: int = 100, what: str = "optimization steps (upper bound)") -> tuple[Param, ...]:
    return (Param("steps", int, steps, 1, 1000, what),
            Param("preview_every", int, 10, 1, 1000, "stream a preview image every k steps"),
            Param("seed", int, 0, 0, 2**31 - 1, "random seed (results repeat on CPU)"))


COMMON = common()


def _image(arr: np.ndarray, side: int | None = None) -> torch.Tensor:
    x = torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None].float()
    h, w = x.shape[2:]
    scale = min(1.0, (side or MAX_SIDE) / max(h, w)) if side is None else side / max(h, w)
    if scale != 1.0:
        x = F.interpolate(x, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
    return x


def _result(r) -> dict:
    """The outputs every optimization returns: the image and the steps it ran."""
    return {"image": pixels(r.image), "steps": np.array([r.steps], np.int32)}


# The perturbation as a picture: grey 128 is no change, each level of change shown this many levels away.
FOOLING_MAGNIFY = 10


def _run_fooling(inputs: dict, p: dict, progress) -> dict:
    """The fooled image beside what the classifier saw before, both labels, and the change magnified."""
    model = load_classifier()
    x = _image(inputs["image"], 224)
    r = methods.fooling_image(model, x, p["target"], p["epsilon"], p["steps"], p["lr"], progress=progress)
    before, label = model.classes[r.before], model.classes[r.after]
    change = (128 + FOOLING_MAGNIFY * (r.image - x)).clamp(0, 255)
    return {"image": pixels(r.image), "label": np.array([label.encode()], np.object_),
            "original": pixels(x), "original_label": np.array([before.encode()], np.object_),
            "perturbation": pixels(change), "linf": np.array([r.linf], np.float32),
            "l2": np.array([r.l2], np.float32), "steps": np.array([r.steps], np.int32)}


def _run_class_viz(inputs: dict, p: dict, progress) -> dict:
    given = inputs.get("class_index")
    target = DEFAULT_CLASS if given is None or given.size == 0 else int(given.reshape(-1)[0])
    if not 0 <= target < 1000:
        raise InvalidArgument(f"input 'class_index' must be an ImageNet class in [0, 999], got {target}")
    r = methods.class_visualization(load_classifier(), target, p["size"], p["steps"], p["lr"], p["l2"],
                                     seed=p["seed"], progress=progress)
    return _result(r)


def _run_feature_viz(inputs: dict, p: dict, progress) -> dict:
    from ..neurons import network

    net = network(p["layer"])
    given = inputs.get("image")
    start = None if given is None or given.size == 0 else F.interpolate(
        _image(given), size=(p["size"], p["size"]), mode="bilinear", align_corners=False, antialias=True)
    r = methods.feature_visualization(net, p["channel"], p["size"], p["steps"], p["lr"], p["l2"],
                                       jitter_px=p["jitter"], scales=(1.0, 0.9, 1.1) if p["robust"] else (1.0,),
                                       seed=p["seed"], progress=progress, start=start)
    with torch.no_grad():
        a = net(r.image)[0]
    if p["channel"] >= a.shape[0]:
        raise InvalidArgument(f"parameter 'channel' must be in [0, {a.shape[0] - 1}] for {p['layer']}")
    return {**_result(r), "activation": np.array([float(a[p["channel"]].max())], np.float32)}


def _channel_rule(p: dict) -> None:
    if p["layer"] == "class" and p["channel"] > 999:
        raise InvalidArgument("for layer 'class' the channel is an ImageNet class in [0, 999]")


def _texture_layers(p: dict) -> tuple[str, ...]:
    """The layers whose Gram matrices are matched: the request's (comma-separated), else the network's style ones."""
    names = tuple(dict.fromkeys(n.strip() for n in p["layers"].split(",") if n.strip()))
    return names or default_layers(p["loss_network"])[0]


def _run_texture(inputs: dict, p: dict, progress) -> dict:
    net = _net(p, _texture_layers(p))
    r = methods.texture_synthesis(net, _image(inputs["image"], 256), p["size"], p["steps"], p["lr"],
                                   p["seed"], progress=progress)
    return _result(r)


def _run_deepdream(inputs: dict, p: dict, progress) -> dict:
    vgg = cached_loss_network("vgg16", LAYERS)
    side = min(p["size"], max(inputs["image"].shape[:2]))  # shrink to size, never enlarge
    r = methods.deepdream(vgg, _image(inputs["image"], side), p["layer"], p["steps"], p["lr"], p["octaves"],
                           p["octave_scale"], p["jitter"], p["seed"], progress=progress)
    return _result(r)


def _run_inversion(inputs: dict, p: dict, progress) -> dict:
    valid = EFFICIENTNET_LAYERS if p["loss_network"] == "efficientnet-lite0" else LAYERS
    if p["layer"] not in valid:
        raise InvalidArgument(f"parameter 'layer' = {p['layer']!r} is not a layer of {p['loss_network']}; "
                              f"use one of {list(valid)}")
    net = _net(p, (p["layer"],))
    r = methods.feature_inversion(net, _image(inputs["image"], p["size"]), p["layer"], p["steps"], p["lr"],
                                   p["tv_weight"], p["beta"], p["seed"], progress=progress)
    return _result(r)


def _run_gatys(inputs: dict, p: dict, progress) -> dict:
    styles = inputs["style"]
    weights = inputs.get("style_weights")
    weights = [1.0] * len(styles) if weights is None else [float(w) for w in weights.reshape(-1)]
    if len(weights) != len(styles) or min(weights) < 0 or sum(weights) <= 0:
        raise InvalidArgument(f"input 'style_weights' must hold {len(styles)} non-negative weights with a "
                              f"positive sum (one per style image), got {weights}")
    content = _image(inputs["content"], p["size"])
    net = _net(p)
    r = methods.gatys_transfer(net, content, [_image(s, p["style_size"]) for s in styles], weights,
                                p["content_weight"], p["style_weight"], p["tv_weight"], net.content_layer,
                                steps=p["steps"], lr=p["lr"], progress=progress)
    return _result(r)


def optimization(name: str, description: str, inputs: tuple[Tensor, ...], params: tuple[Param, ...], run,
                 extra_outputs: tuple[Tensor, ...] = (), rule=None, steps: tuple[Param, ...] = COMMON) -> Spec:
    """An iterative technique: the image and the steps run, then (step, loss) streamed as it goes."""
    outputs = (image(), scalar("steps"), scalar("step"), scalar("loss", mc.TYPE_FP32), *extra_outputs)
    extra = {"rule": rule} if rule else {}
    return Spec(name, description, inputs, outputs, (*params, *steps), run, decoupled=True, family="optimization",
                **extra)


SPECS = (
    optimization("fooling", "targeted adversarial image within an L-inf ball (at 224x224); 'original' is what "
                 f"the classifier saw before, 'perturbation' the change x{FOOLING_MAGNIFY} around grey 128", (image(),),
                 (Param("target", int, 1, 0, 999, "class the classifier must say"),
                  Param("epsilon", float, 2.0, 0.1, 32.0, "L-inf budget in grey levels"),
                  Param("lr", float, 0.25, 0.001, 10.0, "Adam step size (grey levels)")), _run_fooling,
                 (Tensor("label", mc.TYPE_STRING, (1,)), image("original"), text("original_label"),
                  image("perturbation"), scalar("linf", mc.TYPE_FP32), scalar("l2", mc.TYPE_FP32))),
    optimization("class_visualization", "gradient ascent on a class score with L2, blur and jitter regularizers "
                 f"(class_index: optional, default {DEFAULT_CLASS}, flamingo)",
                 (Tensor("class_index", mc.TYPE_INT32, (1,), optional=True),),
                 (Param("size", int, 128, 32, 384, "image side"), Param("lr", float, 8.0, 0.01, 100.0, "step size"),
                  Param("l2", float, 1.0, 0.0, 100.0, "L2 regularizer weight")), _run_class_viz),
    optimization("feature_visualization", "gradient ascent on one channel of one layer (a VGG16 ReLU as "
                 "max_activating_patches names it, a classifier block, or 'class': a logit) from noise, with L2, "
                 "blur, jitter and scale regularizers; 'activation' is the channel's maximum over positions on the "
                 "result, the quantity max_activating_patches scores (image: optional, a start instead of noise)",
                 (Tensor("image", mc.TYPE_UINT8, (-1, -1, 3), optional=True),),
                 (choice("layer", "relu4_3", NEURON_LAYERS, "the channel's layer"),
                  Param("channel", int, 0, 0, 2047, "the channel (for 'class': an ImageNet class)"),
                  Param("size", int, 224, 32, 384, "image side (224: the gallery's scale)"),
                  Param("lr", float, 4.0, 0.01, 100.0, "step size (grey levels)"),
                  Param("l2", float, 1.0, 0.0, 100.0, "L2 regularizer weight"),
                  Param("jitter", int, 8, 0, 64, "random shift per step (pixels)"),
                  Param("robust", int, 1, 0, 1, "1: random rescaling by 0.9-1.1 each step (transformation "
                        "robustness)")), _run_feature_viz, (scalar("activation", mc.TYPE_FP32),),
                 rule=_channel_rule),
    optimization("texture_synthesis", "a new image matching the Gram matrices of the input texture "
                 "(EfficientNet-Lite0 by default: strokes and motifs; vgg16 for the classic look)", (image(),),
                 (Param("size", int, 128, 32, 384, "output side"), Param("lr", float, 4.0, 0.01, 100.0, "step size"),
                  _network_param("efficientnet-lite0", "network whose Gram matrices are matched"),
                  Param("layers", str, "", 0, 200, "comma-separated layers to match, e.g. relu1_1 or "
                        "relu1_1,relu2_1,relu3_1 (default: the network's style layers); low layers give texture, "
                        "higher ones larger structures")), _run_texture),
    optimization("deepdream", "amplify what a VGG16 layer sees: the gradient at the layer is set to its activation "
                 "(steps per octave; the image is resized to 'size' on its long side)", (image(),),
                 (choice("layer", "relu3_3", LAYERS, "VGG16 layer to amplify"),
                  Param("size", int, 256, 32, MAX_SIDE, "long side a larger image is shrunk to (the answer's size)"),
                  Param("octaves", int, 2, 1, 6, "scales, coarse to fine"),
                  Param("octave_scale", float, 1.4, 1.0, 3.0, "size ratio between octaves"),
                  Param("jitter", int, 8, 0, 64, "random shift per step (pixels)"),
                  Param("lr", float, 2.0, 0.01, 100.0, "step size")), _run_deepdream,
                 steps=common(20, "steps per octave")),
    optimization("feature_inversion", "reconstruct an image from noise by matching one layer's features "
                 "(VGG16 by default)", (image(),),
                 (choice("layer", "relu2_2", LAYERS + EFFICIENTNET_LAYERS, "layer whose features are matched "
                         "(relu* for VGG, stem / block* for EfficientNet-Lite0)"),
                  _network_param("vgg16", "network whose features are inverted"),
                  Param("size", int, 128, 32, 384, "long side of the reconstruction"),
                  Param("tv_weight", float, 1.0, 0.0, 1000.0, "weight of the total-variation regularizer R_V^beta"),
                  Param("beta", float, 2.0, 1.0, 4.0, "exponent beta of R_V^beta"),
                  Param("lr", float, 4.0, 0.01, 100.0, "step size")), _run_inversion),
    optimization("gatys", "optimization-based style transfer from the content photo, with one or more weighted "
                 "styles (style: a batch of equally sized images; style_weights: optional, one per style)",
                 (image("content"), Tensor("style", mc.TYPE_UINT8, (-1, -1, -1, 3)),
                  Tensor("style_weights", mc.TYPE_FP32, (-1,), optional=True)),
                 (Param("size", int, 256, 32, MAX_SIDE, "long side of the result"),
                  Param("style_size", int, 384, 32, 3 * MAX_SIDE // 2, "long side the style images are resized to "
                        "(about 1.5x size)"),
                  _network_param("efficientnet-lite0", "loss network: efficientnet-lite0 paints strokes, vgg16 "
                                 "(bundled HED weights) gives pastel mottling"),
                  Param("content_weight", float, 4.0, 0.0, 1e4, "content loss weight (the network's content layer)"),
                  Param("style_weight", float, 6.0, 0.0, 1e4, "Gram style loss weight (the network's style layers)"),
                  Param("tv_weight", float, 20.0, 0.0, 1e4, "total-variation weight"),
                  Param("lr", float, 4.0, 0.01, 100.0, "step size")), _run_gatys),
)
