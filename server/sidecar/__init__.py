"""The PyTorch sidecar: gradient and activation techniques served as models over the same protocol.

The class names in ``imagenet_classes.txt`` are torchvision's ImageNet-1k category list (BSD-3-Clause).
"""
