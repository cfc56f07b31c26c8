#!/usr/bin/env python3
"""Checks an exported ONNX model with onnx.checker (full check) and ONNX Runtime, against
`transfer-studio predict --json` on the same images (optional, outside CI).

    /tmp/torchenv/bin/pip install onnx onnxruntime pillow numpy
    transfer-studio export --model builtin --onnx /tmp/m.onnx
    python3 scripts/check_onnx_export.py target/release/transfer-studio builtin /tmp/m.onnx IMAGE...

MODEL is `builtin` or a saved model directory. The preprocessing comes from the file's
metadata: shorter side to `resize` (Pillow bilinear), centre crop `image_size`, x / 255.
Exit status 1 if the labels differ or a probability differs by more than 1e-3.
"""
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image


def preprocess(path, resize, size):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    # torchvision's Resize(int): the shorter side to `resize`, the longer one truncated.
    if w <= h:
        new = (resize, int(resize * h / w))
    else:
        new = (int(resize * w / h), resize)
    img = img.resize(new, Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)


def main():
    binary, model, path, images = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    meta = {p.key: p.value for p in m.metadata_props}
    labels = json.loads(meta["labels"])
    resize, size = int(meta["resize"]), int(meta["image_size"])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(p, resize, size) for p in images])
    probs, logits = session.run(["probabilities", "logits"], {"image": batch})
    ours = json.loads(
        subprocess.run(
            [binary, "predict", "--model", model, "--top-k", str(len(labels)), "--json", *images],
            check=True,
            capture_output=True,
        ).stdout
    )
    worst, failures = 0.0, 0
    for row, result in zip(probs, ours):
        for c in result["top"]:
            if labels[c["index"]] != c["label"]:
                failures += 1
            worst = max(worst, abs(float(row[c["index"]]) - c["prob"]))
    failures += worst > 1e-3
    print(f"onnx.checker full check passed; opset {m.opset_import[0].version}; "
          f"{len(labels)} labels; worst |p_ort - p_predict| = {worst:.2e} over {len(images)} images")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
