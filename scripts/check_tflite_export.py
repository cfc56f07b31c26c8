#!/usr/bin/env python3
"""Runs an exported TFLite model in Google's TFLite interpreter (LiteRT) against
`transfer-studio predict --json` on the same images (optional, outside CI).

    pip install ai-edge-litert pillow numpy        # or tflite-runtime
    transfer-studio export --model builtin --out /tmp/m.tflite
    python3 scripts/check_tflite_export.py target/release/transfer-studio builtin /tmp/m.tflite IMAGE...

MODEL is `builtin` or a saved model directory. The preprocessing comes from the file's
metadata (read from the flatbuffer here, no schema package needed): shorter side to `resize`
(Pillow bilinear), centre crop `image_size`, x / 255, NHWC. The app predicts on the same
resized images, so that both classify the same pixels.

Prints the top-1 agreement with the app, the largest probability difference and the
interpreter's speed. Exit status 1 if the labels differ, or if top-1 agreement is under
--min-agreement (default 0.99; an f32 file must also match within 1e-3).
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # the older package
    from tflite_runtime.interpreter import Interpreter


def table(buf, pos):
    """The field reader of the flatbuffer table at `pos`."""
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    vlen = struct.unpack_from("<H", buf, vtable)[0]

    def field(i):
        off = 4 + 2 * i
        if off >= vlen:
            return None
        rel = struct.unpack_from("<H", buf, vtable + off)[0]
        return pos + rel if rel else None

    return field


def deref(buf, pos):
    return pos + struct.unpack_from("<I", buf, pos)[0]


def vector(buf, pos):
    start = deref(buf, pos)
    return struct.unpack_from("<I", buf, start)[0], start + 4


def metadata(path):
    """The Model.metadata entries (name -> bytes): fields 4 (buffers) and 6 (metadata)."""
    buf = open(path, "rb").read()
    model = table(buf, deref(buf, 0))
    n_buf, buffers = vector(buf, model(4))
    out = {}
    if model(6) is None:
        return out
    n_meta, entries = vector(buf, model(6))
    for k in range(n_meta):
        entry = table(buf, deref(buf, entries + 4 * k))
        name_len, name_at = vector(buf, entry(0))
        name = buf[name_at : name_at + name_len].decode()
        index = struct.unpack_from("<I", buf, entry(1))[0] if entry(1) else 0
        data = table(buf, deref(buf, buffers + 4 * index))(0)
        if data is None:
            out[name] = b""
            continue
        length, at = vector(buf, data)
        out[name] = buf[at : at + length]
    return out


def resized(path, resize):
    """The image with its shorter side at `resize` (torchvision's Resize(int), Pillow bilinear)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        new = (resize, int(resize * h / w))
    else:
        new = (int(resize * w / h), resize)
    return img.resize(new, Image.BILINEAR)


def centre_crop(img, size):
    w, h = img.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.float32) / 255.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("model")
    parser.add_argument("tflite")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--min-agreement", type=float, default=0.99)
    args = parser.parse_args()
    meta = metadata(args.tflite)
    labels = json.loads(meta["labels"])
    precision = meta.get("precision", b"f32").decode()
    resize, size = int(meta["resize"]), int(meta["image_size"])
    interpreter = Interpreter(model_path=args.tflite, num_threads=2)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outputs = {o["name"]: o["index"] for o in interpreter.get_output_details()}
    # The app is given the same resized pixels (saved losslessly), so that both see the same
    # crop: resizing is not what is being checked.
    tmp = tempfile.mkdtemp(prefix="tflite-check-")
    probs, seconds, pngs = [], 0.0, []
    for k, path in enumerate(args.images):
        img = resized(path, resize)
        pngs.append(os.path.join(tmp, f"{k:04}.png"))
        img.save(pngs[-1])
        interpreter.set_tensor(inp["index"], centre_crop(img, size)[None])
        start = time.perf_counter()
        interpreter.invoke()
        seconds += time.perf_counter() - start
        probs.append(interpreter.get_tensor(outputs["probabilities"])[0].copy())
    ours = json.loads(
        subprocess.run(
            [args.binary, "predict", "--model", args.model, "--top-k", str(len(labels)),
             "--json", *pngs],
            check=True,
            capture_output=True,
        ).stdout
    )
    shutil.rmtree(tmp)
    worst, agree, failures = 0.0, 0, 0
    for row, result in zip(probs, ours):
        top = result["top"]
        for c in top:
            if labels[c["index"]] != c["label"]:
                failures += 1
            worst = max(worst, abs(float(row[c["index"]]) - c["prob"]))
        agree += int(np.argmax(row)) == top[0]["index"]
    share = agree / len(args.images)
    failures += share < args.min_agreement
    failures += precision == "f32" and worst > 1e-3
    print(f"LiteRT ran {args.tflite} ({precision}, {len(labels)} labels, input {inp['shape'].tolist()} "
          f"{inp['dtype'].__name__}): top-1 agreement with predict {share * 100:.1f} % over "
          f"{len(args.images)} images, worst |p_tflite - p_predict| = {worst:.4f}, "
          f"{len(args.images) / seconds:.1f} images/s (batch 1, 2 threads)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
