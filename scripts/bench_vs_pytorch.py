#!/usr/bin/env python3
"""Runs the workloads of `transfer-studio bench` in PyTorch eager and in transfer-studio,
alternating, and prints the ratios (transfer-studio / PyTorch).

PyTorch is a benchmark dependency only. Set it up once (CPU wheels, no GPU needed):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch numpy safetensors --index-url https://download.pytorch.org/whl/cpu

then, from the repository root:

    cargo build --release
    /tmp/torchenv/bin/python scripts/bench_vs_pytorch.py --rounds 3

Stronger peers: `--torch-compile` (inductor; compiling takes minutes) and `--ort` (ONNX Runtime
on `transfer-studio export`'s file; pip install onnxruntime). Other networks: `--backbone
resnet18 --weights resnet18.pth` (or vgg16; torchvision's ImageNet checkpoint, read by both
sides; PyTorch builds torchvision's model, pip install torchvision), `--no-fine-tune` to time
only inference (VGG16's fine-tune step is slow on a CPU).

Both sides use the same bundled weights (assets/models/efficientnet_lite0.safetensors), the
same synthetic inputs, 224 px, batch 32, the same number of threads (2 unless --threads), and
the same workloads:
  forward          inference of the whole network (BatchNorm in eval mode), images/s
  fine_tune        one full training step: forward in train mode, new 10-class classifier with
                   dropout 0.2, cross-entropy, backward, AdamW (lr 1e-3, wd 1e-4), images/s
  head_epoch_ms    one epoch of a 1280→10 classifier over 1000 cached features, batch 32,
                   shuffled, dropout, AdamW
  feature_caching  centre crop + normalise in-memory 256 px images, forward to pooled features
  fine_tune_peak_rss_gb  peak RSS while the fine-tune steps run
Each side runs in a fresh process per round; medians across rounds are compared.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(REPO, "assets", "models", "efficientnet_lite0.safetensors")
# TRANSFER_STUDIO_BIN: another build (e.g. a separate CARGO_TARGET_DIR).
BINARY = os.environ.get("TRANSFER_STUDIO_BIN", os.path.join(REPO, "target", "release", "transfer-studio"))

# (repeats, kernel, stride, expand, in, out) per stage: EfficientNet-Lite0.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def torch_worker(args):
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class SamePadConv(nn.Conv2d):
        """TF "SAME" padding (asymmetric), as the checkpoint was trained with."""

        def forward(self, x):
            ih, iw = x.shape[-2:]
            k, s = self.kernel_size[0], self.stride[0]
            oh, ow = math.ceil(ih / s), math.ceil(iw / s)
            ph = max((oh - 1) * s + k - ih, 0)
            pw = max((ow - 1) * s + k - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)

    class Block(nn.Module):
        def __init__(self, k, s, e, cin, cout):
            super().__init__()
            mid = cin * e
            self.has_expand = e != 1
            if self.has_expand:
                self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SamePadConv(mid, mid, k, s, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = s == 1 and cin == cout

        def forward(self, x):
            y = x
            if self.has_expand:
                y = F.relu6(self._bn0(self._expand_conv(y)))
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class Lite0(nn.Module):
        def __init__(self, classes=1000, dropout=0.2):
            super().__init__()
            self._conv_stem = SamePadConv(3, 32, 3, 2, bias=False)
            self._bn0 = bn(32)
            blocks = []
            for repeats, k, s, e, cin, cout in STAGES:
                for r in range(repeats):
                    blocks.append(Block(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(1280, classes)

        def features(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean((2, 3))

        def forward(self, x):
            return self._fc(self._dropout(self.features(x)))

    class Torchvision(nn.Module):
        """torchvision's ResNet or VGG, with `features` = what transfer-studio caches: the
        pooled map (ResNet) or fc7 after its ReLU (VGG16)."""

        def __init__(self, name, classes):
            super().__init__()
            import torchvision

            self.name = name
            self.net = getattr(torchvision.models, name)(num_classes=classes)

        def features(self, x):
            n = self.net
            if self.name.startswith("vgg"):
                x = torch.flatten(n.avgpool(n.features(x)), 1)
                return n.classifier[:-1](x)
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
            return torch.flatten(n.avgpool(x), 1)

        def forward(self, x):
            return self.net(x)

        def load_state_dict(self, state, strict=False):
            return self.net.load_state_dict(state, strict=strict)

        def state_dict(self):
            return self.net.state_dict()

    if args.backbone == "efficientnet-lite0":
        state = {k: v.float() for k, v in load_file(WEIGHTS).items()}
    else:
        state = {k: v.float() for k, v in torch.load(args.weights, map_location="cpu").items()}

    def build(classes):
        m = Lite0(classes) if args.backbone == "efficientnet-lite0" else Torchvision(args.backbone, classes)
        own = m.state_dict()
        load = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        m.load_state_dict(load, strict=False)
        if args.channels_last:
            m = m.to(memory_format=torch.channels_last)
        return m

    def layout(x):
        return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x

    batch, px, reps = args.batch_size, args.image_size, args.repeats
    g = torch.Generator().manual_seed(0)
    images = layout(torch.rand(batch, 3, px, px, generator=g) * 2 - 1)
    labels = torch.arange(batch) % 10
    out = {}

    def compiled(m):
        # torch.compile (inductor) when asked: PyTorch's strongest CPU path.
        return torch.compile(m) if args.torch_compile else m

    # Forward (inference).
    model = build(1000).eval()
    forward_model = compiled(model)
    with torch.inference_mode():
        forward_model(images)
        rates = []
        for _ in range(reps):
            t = time.perf_counter()
            forward_model(images)
            rates.append(batch / (time.perf_counter() - t))
    out["forward_images_per_sec"] = statistics.median(rates)

    # Feature caching: crop + normalise in-memory uint8 images, forward to pooled features.
    resize = (px * 8 + 6) // 7
    pics = [
        np.random.default_rng(i).integers(0, 256, (resize, resize, 3), dtype=np.uint8)
        for i in range(2 * batch)
    ]
    off = (resize - px) // 2

    def cache(items):
        feats = []
        for i in range(0, len(items), batch):
            group = items[i : i + batch]
            x = torch.from_numpy(np.stack([p[off : off + px, off : off + px] for p in group]))
            x = x.permute(0, 3, 1, 2).float().div_(255).sub_(0.5).div_(0.5)
            with torch.inference_mode():
                feats.append(model.features(layout(x)))
        return torch.cat(feats)

    cache(pics[:batch])
    t = time.perf_counter()
    cache(pics)
    out["feature_caching_images_per_sec"] = len(pics) / (time.perf_counter() - t)

    # Head-only epoch over 1000 cached features.
    with torch.inference_mode():
        dim = model.features(images[:1]).shape[1]
    del model
    feats = torch.rand(1000, dim, generator=g) * 6
    flabels = torch.arange(1000) % 10
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 10))
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    times = []
    for epoch in range(max(reps, 5) + 1):
        t = time.perf_counter()
        order = torch.randperm(1000)
        for i in range(0, 1000, 32):
            idx = order[i : i + 32]
            loss = F.cross_entropy(head(feats[idx]), flabels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        if epoch:
            times.append(time.perf_counter() - t)
    out["head_epoch_ms"] = statistics.median(times) * 1e3

    if args.no_fine_tune:
        print(json.dumps(out))
        return
    # Full fine-tune step.
    reset = reset_peak_rss()
    model = build(10).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    train_model = compiled(model)
    times = []
    # Compiled: the first step compiles forward and backward; two warm-up steps then.
    warmup = 2 if args.torch_compile else 1
    for step in range(reps + warmup):
        t = time.perf_counter()
        loss = F.cross_entropy(train_model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if step >= warmup:
            times.append(time.perf_counter() - t)
    out["fine_tune_images_per_sec"] = batch / statistics.median(times)
    if reset:
        out["fine_tune_peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(out))


def ort_worker(args):
    """ONNX Runtime forward on transfer-studio's own ONNX export of the same network."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.ort_worker, options, providers=["CPUExecutionProvider"])
    batch, px = args.batch_size, args.image_size
    images = np.random.default_rng(0).random((batch, 3, px, px), dtype=np.float32)
    session.run(None, {"image": images})
    rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        session.run(None, {"image": images})
        rates.append(batch / (time.perf_counter() - t))
    print(json.dumps({"forward_images_per_sec": statistics.median(rates)}))


def run_json(cmd, env):
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--channels-last", action="store_true", help="PyTorch in NHWC (channels_last)")
    p.add_argument(
        "--torch-jemalloc",
        metavar="LIBJEMALLOC",
        help="run PyTorch with this jemalloc preloaded, freed memory kept (glibc's malloc returns "
        "big tensors to the OS after each op: millions of page faults); e.g. "
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 from Debian's libjemalloc2",
    )
    p.add_argument("--torch-compile", action="store_true", help="PyTorch through torch.compile (inductor)")
    p.add_argument(
        "--ort",
        action="store_true",
        help="also ONNX Runtime (pip install onnxruntime): forward on `transfer-studio export`'s ONNX file",
    )
    p.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        choices=["efficientnet-lite0", "resnet18", "resnet50", "vgg16"],
        help="the network (default: the bundled Lite0)",
    )
    p.add_argument("--weights", help="torchvision checkpoint (.pth) for --backbone other than Lite0")
    p.add_argument("--no-fine-tune", action="store_true", help="skip the fine-tune step")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ort-worker", metavar="ONNX", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_worker:
        torch_worker(args)
        return
    if args.ort_worker:
        ort_worker(args)
        return
    if args.backbone != "efficientnet-lite0" and not args.weights:
        sys.exit(f"--backbone {args.backbone} needs --weights (torchvision's checkpoint)")
    if args.ort and args.backbone != "efficientnet-lite0":
        sys.exit("--ort times the bundled Lite0 only")
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: run `cargo build --release` first")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    common = ["--batch-size", str(args.batch_size), "--image-size", str(args.image_size), "--repeats", str(args.repeats)]
    network = ["--backbone", args.backbone] + (["--weights", os.path.abspath(args.weights)] if args.weights else [])
    skip = ["--no-fine-tune"] if args.no_fine_tune else []
    ours_cmd = [BINARY, "bench", "--json"] + common + network + skip
    torch_cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--threads", str(args.threads)]
    torch_cmd += common + network + skip
    if args.channels_last:
        torch_cmd.append("--channels-last")
    if args.torch_compile:
        torch_cmd.append("--torch-compile")
    ort_cmd = None
    if args.ort:
        onnx = os.path.join(REPO, "target", "bench-lite0.onnx")
        os.makedirs(os.path.dirname(onnx), exist_ok=True)
        subprocess.run([BINARY, "export", "--model", "builtin", "--onnx", onnx], check=True, capture_output=True)
        ort_cmd = [sys.executable, os.path.abspath(__file__), "--ort-worker", onnx, "--threads", str(args.threads)] + common
    keys = [
        ("forward_images_per_sec", "forward (images/s)", True),
        ("fine_tune_images_per_sec", "full fine-tune step (images/s)", True),
        ("head_epoch_ms", "head-only epoch, 1000 features (ms)", False),
        ("feature_caching_images_per_sec", "feature caching (images/s)", True),
        ("fine_tune_peak_rss_bytes", "peak RSS of the fine-tune step (GB)", False),
    ]
    torch_env = dict(env)
    if args.torch_jemalloc:
        torch_env["LD_PRELOAD"] = args.torch_jemalloc
        torch_env["MALLOC_CONF"] = "background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1"
    results = {"transfer-studio": [], "pytorch": [], "onnxruntime": []}
    for r in range(args.rounds):
        # Alternate which side goes first, so that drift in the machine's load hits both.
        order = [("transfer-studio", ours_cmd, env), ("pytorch", torch_cmd, torch_env)]
        if ort_cmd:
            order.append(("onnxruntime", ort_cmd, env))
        if r % 2:
            order.reverse()
        for name, cmd, cmd_env in order:
            res = run_json(cmd, cmd_env)
            results[name].append(res)
            shown = {k: res.get(k) if res.get(k) is not None else float("nan") for k, _, _ in keys}
            print(f"round {r + 1} {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()), file=sys.stderr)

    def med(name, key):
        values = [r[key] for r in results[name] if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    layout = "torch.compile" if args.torch_compile else "eager"
    layout += ", channels_last" if args.channels_last else ", default NCHW"
    if args.torch_jemalloc:
        layout += ", jemalloc"
    print(f"\n{args.backbone}, {args.image_size} px, batch {args.batch_size}, {args.threads} threads, {args.rounds} alternating rounds; PyTorch ({layout})")
    print(f"{'workload':40} {'ours':>10} {'pytorch':>10} {'ratio':>8}")
    summary = {}
    for key, label, higher_better in keys:
        ours, theirs = med("transfer-studio", key), med("pytorch", key)
        if math.isnan(ours) and math.isnan(theirs):
            continue  # not run (--no-fine-tune)
        scale = 1e9 if key.endswith("bytes") else 1.0
        # Ratio > 1 means transfer-studio is better (faster or leaner).
        ratio = ours / theirs if higher_better else theirs / ours
        summary[key] = {"ours": ours, "pytorch": theirs, "ratio": ratio}
        print(f"{label:40} {ours / scale:10.2f} {theirs / scale:10.2f} {ratio:7.2f}x")
    if ort_cmd:
        ours, theirs = med("transfer-studio", "forward_images_per_sec"), med("onnxruntime", "forward_images_per_sec")
        summary["forward_vs_onnxruntime"] = {"ours": ours, "onnxruntime": theirs, "ratio": ours / theirs}
        print(f"{'forward vs ONNX Runtime (images/s)':40} {ours:10.2f} {theirs:10.2f} {ours / theirs:7.2f}x")
    print("(ratio > 1: transfer-studio faster, or lighter for RSS)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
