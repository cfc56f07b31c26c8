#!/usr/bin/env python3
"""Builds the bundled demo packs in assets/demo/ (run once; the output is committed).

photos/   (ImageNet-like: the recommendation says *similar*) — 4 classes, 30 crops each, of
          four public-domain / CC0 photos from scikit-image's data folder (the same files as
          tests/fixtures: astronaut.png, chelsea.png, coffee.png, rocket.jpg). Each crop takes
          a random square of 35–70 % of the photo's shorter side, flipped half of the time,
          resized to 128 px, JPEG quality 88.
clothing/ (far from ImageNet: *different*) — 4 classes × 30 images of Fashion-MNIST (MIT
          licence), 28 px grey PNGs, from Debian's dataset-fashion-mnist package
          (`apt-get download dataset-fashion-mnist`, then `dpkg-deb -x`): pass the folder that
          holds train-images-idx3-ubyte.gz as --fashion-mnist.

Needs Pillow and numpy. Seeded: the same inputs give the same files.
"""

import argparse
import gzip
import os
import random

import numpy as np
from PIL import Image, ImageOps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = {"astronaut": "astronaut.png", "cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg"}
FASHION = {0: "t-shirt", 1: "trouser", 7: "sneaker", 8: "bag"}


def photos(out, per_class):
    rng = random.Random(0)
    for cls, name in PHOTOS.items():
        img = Image.open(os.path.join(REPO, "tests", "fixtures", name)).convert("RGB")
        d = os.path.join(out, cls)
        os.makedirs(d, exist_ok=True)
        short = min(img.size)
        for i in range(per_class):
            side = int(short * rng.uniform(0.35, 0.7))
            x = rng.randint(0, img.width - side)
            y = rng.randint(0, img.height - side)
            crop = img.crop((x, y, x + side, y + side)).resize((128, 128), Image.BILINEAR)
            if rng.random() < 0.5:
                crop = ImageOps.mirror(crop)
            crop.save(os.path.join(d, f"{cls}-{i:02}.jpg"), quality=88)


def clothing(out, per_class, root):
    with gzip.open(os.path.join(root, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(root, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    for label, cls in FASHION.items():
        d = os.path.join(out, cls)
        os.makedirs(d, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(labels == label)[:per_class]):
            Image.fromarray(images[idx], "L").save(os.path.join(d, f"{cls}-{i:02}.png"), optimize=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fashion-mnist", required=True, help="folder with train-images-idx3-ubyte.gz")
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--out", default=os.path.join(REPO, "assets", "demo"))
    args = p.parse_args()
    photos(os.path.join(args.out, "photos"), args.per_class)
    clothing(os.path.join(args.out, "clothing"), args.per_class, args.fashion_mnist)


if __name__ == "__main__":
    main()
