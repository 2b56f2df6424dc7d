"""Attribution: a map over the image of how much each pixel mattered to a class score or a neuron (saliency,
guided backprop, Grad-CAM, occlusion) and the segmentation seeded by such a map. ``specs`` declares the served
techniques, ``methods`` computes the maps (Captum's ``attribute`` signature), ``segmentation`` grows a mask."""

from .segmentation import SPECS as _SEGMENTATION
from .specs import SPECS as _MAPS

SPECS = (*_MAPS, *_SEGMENTATION)
