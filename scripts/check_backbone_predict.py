#!/usr/bin/env python3
"""End-to-end check of `predict --backbone NAME --weights FILE.pth` against torchvision.

For ResNet-18, ResNet-50 and VGG16: builds the torchvision model (seeded random weights; the
ImageNet weights are not reachable offline, and parity does not depend on which weights),
saves its state dict as a zip `.pth`, classifies the given photos with torchvision's own
preprocessing (Pillow: shorter side to 256 bilinear, centre crop 224, ImageNet mean/std) and
with `transfer-studio predict --json`, and compares the top-5 classes and probabilities.

    /tmp/torchenv/bin/python scripts/check_backbone_predict.py target/release/transfer-studio \\
        tests/fixtures/*.png tests/fixtures/*.jpg

Exit status 1 if any top-5 differs or a probability differs by more than 1e-3.
"""
import json
import subprocess
import sys
import tempfile

import torch
import torchvision
from PIL import Image
from torchvision import transforms


def torch_top5(model, path):
    pre = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    x = pre(Image.open(path).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    top = torch.topk(probs, 5)
    return [(int(i), float(p)) for p, i in zip(top.values, top.indices)]


def main():
    binary, images = sys.argv[1], sys.argv[2:]
    torch.manual_seed(0)
    worst, failures = 0.0, 0
    for name in ["resnet18", "resnet50", "vgg16"]:
        model = getattr(torchvision.models, name)(weights=None).eval()
        with tempfile.NamedTemporaryFile(suffix=".pth") as f:
            torch.save(model.state_dict(), f.name)
            out = subprocess.run(
                [binary, "predict", "--backbone", name, "--weights", f.name, "--json", *images],
                check=True,
                capture_output=True,
            ).stdout
        ours = json.loads(out)
        for path, result in zip(images, ours):
            theirs = torch_top5(model, path)
            mine = [(c["index"], c["prob"]) for c in result["top"]]
            diff = max(abs(a[1] - b[1]) for a, b in zip(theirs, mine))
            worst = max(worst, diff)
            same = [a[0] for a in theirs] == [b[0] for b in mine]
            failures += (not same) or diff > 1e-3
            print(f"{name:9} {path.split('/')[-1]:14} top-5 same: {same}  max |dp| {diff:.2e}")
    print(f"worst probability difference {worst:.2e}; {failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
