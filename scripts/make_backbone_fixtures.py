#!/usr/bin/env python3
"""Reference logits of torchvision's ResNet-18, ResNet-50 and VGG16 for the parity tests.

Every tensor of each network's state dict is filled by a formula of its name and element
index (no random generator, no weights file to ship); tests/backbones.rs fills the Rust
network by the same formula, runs the same deterministic input and compares logits.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision numpy
    /tmp/torchenv/bin/python scripts/make_backbone_fixtures.py > tests/fixtures/backbones.json

Output: {"<name>": {"side_px": S, "logits": [[...], [...]]}, ...} (two images per network).
"""
import json
import math
import sys

import numpy as np
import torch
import torchvision

SIDE_PX = 64
BATCH = 2


def fnv1a(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def values(name, shape):
    """The formula tests/common/mod.rs repeats: see `synthetic_value` there."""
    n = int(np.prod(shape)) if len(shape) else 1
    phase = (fnv1a(name) % 1000) / 1000.0 * 2.0 * math.pi
    i = np.arange(n, dtype=np.float64)
    raw = np.sin((i + 1.0) * 0.7071067811865476 + phase)
    if name.endswith("running_var"):
        v = 0.5 + 0.25 * (raw + 1.0)
    elif name.endswith("running_mean"):
        v = 0.1 * raw
    elif name.endswith("bias"):
        v = 0.05 * raw
    elif len(shape) == 1:
        v = 1.0 + 0.1 * raw
    else:
        fan_in = n // shape[0]
        v = raw * math.sqrt(3.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def image_batch():
    """NCHW input: `0.5 * sin(0.37 * (c*S*S + y*S + x) + 0.11 * n)`, the same in tests."""
    n, c, y, x = np.meshgrid(
        np.arange(BATCH), np.arange(3), np.arange(SIDE_PX), np.arange(SIDE_PX), indexing="ij"
    )
    flat = (c * SIDE_PX * SIDE_PX + y * SIDE_PX + x).astype(np.float64)
    v = 0.5 * np.sin(0.37 * flat + 0.11 * n)
    return torch.from_numpy(v.astype(np.float32))


def main():
    torch.set_num_threads(2)
    out = {}
    for name, build in [
        ("resnet18", torchvision.models.resnet18),
        ("resnet50", torchvision.models.resnet50),
        ("vgg16", torchvision.models.vgg16),
    ]:
        model = build(weights=None).eval()
        state = model.state_dict()
        filled = {
            key: (t if key.endswith("num_batches_tracked") else values(key, tuple(t.shape)))
            for key, t in state.items()
        }
        model.load_state_dict(filled)
        with torch.no_grad():
            logits = model(image_batch())
        out[name] = {"side_px": SIDE_PX, "logits": logits.tolist()}
        print(name, "logit range", float(logits.min()), float(logits.max()), file=sys.stderr)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
