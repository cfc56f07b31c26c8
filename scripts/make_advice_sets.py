#!/usr/bin/env python3
"""Builds the image sets that check the guide's advice and Start of ConvNet's cut.

Every set is generated here from a fixed seed (numpy + Pillow), so it is reproducible and free
of third-party image rights (CC0); the only outside material is Debian's fonts (DejaVu: Bitstream
Vera licence; Droid Sans Fallback: Apache 2.0) for the two text sets. Each set is written as
SET/train/<class>/*.png (the data `compare` splits 80/20 into training and validation) and
SET/test/<class>/*.png (held out, used for nothing but the final score).

Four *development* sets decide the rule (`--dev`): procedural textures, the same faint and
noisy, digits in unseen fonts and unseen emoji of five categories (Noto Color Emoji, SIL Open
Font Licence; Debian's fonts-noto-color-emoji), the kinds the rule's weakness was found on. Five *new* kinds are built only to be
evaluated once with the final binary:

  scripts      words in six writing systems (Latin, Cyrillic, Greek, Hebrew, Arabic, CJK)
  spectrogram  log-magnitude spectrograms of generated sounds (rising/falling chirps, chords,
               noise bursts, click trains)
  charts       bar, line, scatter, pie and area charts of random data
  sketches     hand-drawn-like outlines with a jittered pen (circle, square, triangle, star,
               spiral, zigzag)
  automata     space-time diagrams of elementary cellular automata (rules 30, 90, 110, 150, 184)

Usage: make_advice_sets.py OUT [--dev] [--train N] [--test N]
"""

import argparse
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 96
FONTS = "/usr/share/fonts/truetype/dejavu"
DROID = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"


def font(name, size):
    return ImageFont.truetype(os.path.join(FONTS, name), size)


def save(img, root, split, cls, i):
    d = os.path.join(root, split, cls)
    os.makedirs(d, exist_ok=True)
    img.convert("RGB").save(os.path.join(d, f"{cls}_{i:03d}.png"))


def colour(rng, lo=0, hi=255):
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


# ---- development sets --------------------------------------------------------------------

def procedural(rng, cls, noise=0.15):
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    freq = rng.uniform(4, 10)
    phase = rng.uniform(0, 2 * math.pi)
    angle = rng.uniform(0, math.pi)
    u = x * math.cos(angle) + y * math.sin(angle)
    if cls == "stripes":
        v = np.sin(2 * math.pi * freq * u + phase)
    elif cls == "checks":
        v = np.sign(np.sin(2 * math.pi * freq * x + phase) * np.sin(2 * math.pi * freq * y))
    elif cls == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2)
        v = np.sin(2 * math.pi * freq * np.hypot(x - cx, y - cy) + phase)
    elif cls == "dots":
        v = -np.ones_like(x)
        for _ in range(int(rng.integers(8, 25))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.02, 0.07)
            v[np.hypot(x - cx, y - cy) < r] = 1
    elif cls == "noise":
        small = rng.normal(size=(8, 8))
        v = np.array(Image.fromarray(small.astype(np.float32)).resize((SIZE, SIZE), Image.BICUBIC))
    else:  # gradient
        v = 2 * u / max(u.max(), 1e-6) - 1
    v = v + rng.normal(0, noise, v.shape)
    a = np.array(colour(rng))
    b = a + rng.normal(0, 90 if noise > 0.5 else 255, 3)
    t = ((v - v.min()) / (np.ptp(v) + 1e-6))[..., None]
    return Image.fromarray((a * (1 - t) + b * t).clip(0, 255).astype(np.uint8))


def procedural_faint(rng, cls):
    return procedural(rng, cls, noise=0.9)


DIGIT_FONTS_TRAIN = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf",
                     "DejaVuSansMono.ttf", "DejaVuSerif-Italic.ttf"]
DIGIT_FONTS_TEST = ["DejaVuSansCondensed-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
                    "DejaVuSans-ExtraLight.ttf", "DejaVuSansMono-BoldOblique.ttf"]


def digit(rng, cls, fonts):
    img = Image.new("RGB", (SIZE, SIZE), colour(rng, 150, 256))
    d = ImageDraw.Draw(img)
    f = font(fonts[int(rng.integers(len(fonts)))], int(rng.integers(48, 72)))
    d.text((SIZE / 2 + rng.integers(-10, 10), SIZE / 2 + rng.integers(-10, 10)), cls,
           fill=colour(rng, 0, 100), font=f, anchor="mm")
    return img.rotate(rng.uniform(-15, 15), fillcolor=img.getpixel((0, 0)))


EMOJI = {
    "animal": range(0x1F400, 0x1F43E),
    "food": range(0x1F345, 0x1F37C),
    "vehicle": [*range(0x1F680, 0x1F6A4), *range(0x1F6B2, 0x1F6B3)],
    "face": range(0x1F600, 0x1F637),
    "plant": [*range(0x1F331, 0x1F344)],
}
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"


def emoji(rng, cls, held_out):
    """One emoji of the class (the first half of the class's code points for training, the
    second half for testing: the test asks for emoji never seen), on a random background."""
    points = list(EMOJI[cls])
    half = len(points) // 2
    points = points[half:] if held_out else points[:half]
    glyph = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((4, 0), chr(points[int(rng.integers(len(points)))]),
                               font=ImageFont.truetype(EMOJI_FONT, 109), embedded_color=True)
    glyph = glyph.resize((int(rng.integers(48, 84)),) * 2).rotate(rng.uniform(-20, 20))
    img = Image.new("RGBA", (SIZE, SIZE), colour(rng, 120, 256) + (255,))
    img.alpha_composite(glyph, (int(rng.integers(0, SIZE - glyph.width + 1)),
                                int(rng.integers(0, SIZE - glyph.height + 1))))
    return img


# ---- new kinds ---------------------------------------------------------------------------

ALPHABETS = {
    "latin": [chr(c) for c in range(0x61, 0x7B)],
    "cyrillic": [chr(c) for c in range(0x430, 0x450)],
    "greek": [chr(c) for c in range(0x3B1, 0x3CA)],
    "hebrew": [chr(c) for c in range(0x5D0, 0x5EB)],
    "arabic": [chr(c) for c in [*range(0x627, 0x63B), *range(0x641, 0x64B)]],
    "cjk": [chr(c) for c in range(0x4E00, 0x4E00 + 2000)],
}
TEXT_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf",
              "DejaVuSansMono.ttf", "DejaVuSerif.ttf"]
HAS_SERIF_FORMS = {"latin", "cyrillic", "greek"}


def script_text(rng, cls):
    img = Image.new("RGB", (SIZE, SIZE), colour(rng, 170, 256))
    d = ImageDraw.Draw(img)
    size = int(rng.integers(13, 20))
    if cls == "cjk":
        f = ImageFont.truetype(DROID, size)
    else:
        names = TEXT_FONTS if cls in HAS_SERIF_FORMS else TEXT_FONTS[:4]
        f = font(names[int(rng.integers(len(names)))], size)
    ink = colour(rng, 0, 90)
    y = int(rng.integers(2, 12))
    letters = ALPHABETS[cls]
    while y < SIZE - size:
        words = []
        for _ in range(4):
            n = int(rng.integers(1, 4 if cls == "cjk" else 7))
            words.append("".join(letters[int(rng.integers(len(letters)))] for _ in range(n)))
        d.text((int(rng.integers(-8, 6)), y), " ".join(words), fill=ink, font=f)
        y += int(size * rng.uniform(1.2, 1.6))
    return img


def spectrogram(rng, cls):
    rate, secs = 8000, 1.0
    t = np.arange(int(rate * secs)) / rate
    if cls == "chirp-up" or cls == "chirp-down":
        f0, f1 = sorted(rng.uniform(200, 3500, 2))
        if cls == "chirp-down":
            f0, f1 = f1, f0
        phase = 2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * secs))
        s = np.sin(phase)
    elif cls == "chord":
        s = sum(np.sin(2 * math.pi * rng.uniform(150, 1800) * k * t) / k
                for k in range(1, int(rng.integers(3, 6))))
    elif cls == "noise-burst":
        s = np.zeros_like(t)
        for _ in range(int(rng.integers(1, 4))):
            a, n = int(rng.integers(0, len(t) - 1500)), int(rng.integers(600, 2500))
            s[a:a + n] = rng.normal(size=len(s[a:a + n]))
    else:  # clicks
        s = np.zeros_like(t)
        period = int(rng.integers(300, 1200))
        s[int(rng.integers(0, period))::period] = 1.0
        s = np.convolve(s, np.hanning(9), mode="same")
    s = s + rng.normal(0, rng.uniform(0.02, 0.2), len(t))
    win, hop = 190, 84
    frames = np.stack([s[i:i + win] * np.hanning(win) for i in range(0, len(s) - win, hop)])
    mag = np.log1p(np.abs(np.fft.rfft(frames, axis=1)).T[::-1])
    mag = (mag - mag.min()) / (np.ptp(mag) + 1e-9)
    # A viridis-like ramp (dark blue -> green -> yellow).
    ramp = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]])
    idx = mag * (len(ramp) - 1)
    lo = np.floor(idx).astype(int).clip(0, len(ramp) - 2)
    frac = (idx - lo)[..., None]
    rgb = ramp[lo] * (1 - frac) + ramp[lo + 1] * frac
    return Image.fromarray(rgb.astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)


def chart(rng, cls):
    img = Image.new("RGB", (SIZE, SIZE), "white")
    d = ImageDraw.Draw(img)
    left, top, right, bottom = 12, 8, SIZE - 6, SIZE - 12
    if cls != "pie":
        d.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=1)
        for k in range(1, 5):  # tick marks
            yk = bottom - k * (bottom - top) // 5
            d.line([(left - 3, yk), (left, yk)], fill="black")
    n = int(rng.integers(4, 10))
    values = rng.uniform(0.1, 1.0, n)
    c = colour(rng, 0, 200)
    xs = np.linspace(left + 4, right - 4, n)
    ys = bottom - values * (bottom - top - 4)
    if cls == "bar":
        w = (right - left) / n * rng.uniform(0.4, 0.8)
        for x, y in zip(xs, ys):
            d.rectangle([x - w / 2, y, x + w / 2, bottom - 1], fill=c)
    elif cls == "line":
        for _ in range(int(rng.integers(1, 3))):
            ys = bottom - np.cumsum(rng.normal(0, 0.2, n)).clip(-2, 2) * 10 - (bottom - top) / 2
            d.line(list(zip(xs, ys)), fill=colour(rng, 0, 200), width=int(rng.integers(1, 3)))
    elif cls == "scatter":
        m = int(rng.integers(15, 60))
        px = rng.uniform(left + 3, right - 3, m)
        py = (bottom - (px - left) / (right - left) * (bottom - top) * rng.uniform(-0.5, 1)
              + rng.normal(0, 10, m)).clip(top, bottom - 2)
        r = rng.uniform(1, 2.5)
        for x, y in zip(px, py):
            d.ellipse([x - r, y - r, x + r, y + r], fill=c)
    elif cls == "area":
        ys = bottom - (np.cumsum(rng.normal(0, 0.15, n)).clip(-1, 1) * 0.4 + 0.5) * (bottom - top)
        d.polygon([(xs[0], bottom)] + list(zip(xs, ys)) + [(xs[-1], bottom)], fill=c)
    else:  # pie
        shares = values / values.sum()
        box = [SIZE / 2 - 36, SIZE / 2 - 36, SIZE / 2 + 36, SIZE / 2 + 36]
        start = rng.uniform(0, 360)
        for s in shares:
            d.pieslice(box, start, start + 360 * s, fill=colour(rng, 30, 250), outline="white")
            start += 360 * s
    return img


def pen(rng, points, d, width, ink):
    pts = [(x + rng.normal(0, 1.2), y + rng.normal(0, 1.2)) for x, y in points]
    d.line(pts, fill=ink, width=width, joint="curve")


def sketch(rng, cls):
    img = Image.new("RGB", (SIZE, SIZE), colour(rng, 200, 256))
    d = ImageDraw.Draw(img)
    cx, cy = rng.uniform(36, 60, 2)
    r = rng.uniform(20, 36)
    rot = rng.uniform(0, 2 * math.pi)
    width, ink = int(rng.integers(2, 5)), colour(rng, 0, 80)

    def polygon(k, radii):
        return [(cx + radii[i % len(radii)] * math.cos(rot + 2 * math.pi * i / k),
                 cy + radii[i % len(radii)] * math.sin(rot + 2 * math.pi * i / k))
                for i in range(k + 1)]

    if cls == "circle":
        pts = [(cx + r * math.cos(a) * rng.uniform(0.9, 1.1), cy + r * math.sin(a))
               for a in np.linspace(0, 2 * math.pi * rng.uniform(1.0, 1.15), 40)]
    elif cls == "square":
        pts = polygon(4, [r])
    elif cls == "triangle":
        pts = polygon(3, [r])
    elif cls == "star":
        pts = polygon(10, [r, r * 0.45])
    elif cls == "spiral":
        turns = rng.uniform(2, 3.5)
        pts = [(cx + r * a / (2 * math.pi * turns) * math.cos(rot + a),
                cy + r * a / (2 * math.pi * turns) * math.sin(rot + a))
               for a in np.linspace(0, 2 * math.pi * turns, 80)]
    else:  # zigzag
        k = int(rng.integers(4, 8))
        pts = [(cx - r + 2 * r * i / k, cy + (r / 2 if i % 2 else -r / 2)) for i in range(k + 1)]
    pen(rng, pts, d, width, ink)
    return img.rotate(rng.uniform(-10, 10), fillcolor=img.getpixel((0, 0)))


def automaton(rng, cls):
    rule = int(cls.removeprefix("rule"))
    table = np.array([(rule >> k) & 1 for k in range(8)], dtype=np.uint8)
    cells = 48
    row = (rng.random(cells) < rng.uniform(0.2, 0.6)).astype(np.uint8)
    rows = [row]
    for _ in range(47):
        idx = 4 * np.roll(row, 1) + 2 * row + np.roll(row, -1)
        row = table[idx]
        rows.append(row)
    grid = np.array(rows)
    on, off = np.array(colour(rng, 0, 120)), np.array(colour(rng, 150, 256))
    if rng.random() < 0.5:
        on, off = off, on
    rgb = np.where(grid[..., None] == 1, on, off).astype(np.uint8)
    return Image.fromarray(rgb).resize((SIZE, SIZE), Image.NEAREST)


SETS = {
    "procedural": (procedural, ["stripes", "checks", "rings", "dots", "noise", "gradient"]),
    "faint": (procedural_faint, ["stripes", "checks", "rings", "dots", "noise", "gradient"]),
    "digits": (None, [str(i) for i in range(10)]),
    "emoji": (None, list(EMOJI)),
    "scripts": (script_text, list(ALPHABETS)),
    "spectrogram": (spectrogram, ["chirp-up", "chirp-down", "chord", "noise-burst", "clicks"]),
    "charts": (chart, ["bar", "line", "scatter", "area", "pie"]),
    "sketches": (sketch, ["circle", "square", "triangle", "star", "spiral", "zigzag"]),
    "automata": (automaton, ["rule30", "rule90", "rule110", "rule150", "rule184"]),
}
DEV = ["procedural", "faint", "digits", "emoji"]


def build(name, out, n_train, n_test, seed):
    make, classes = SETS[name]
    rng = np.random.default_rng(seed)
    root = os.path.join(out, name)
    for cls in classes:
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                if name == "digits":
                    img = digit(rng, cls, DIGIT_FONTS_TRAIN if split == "train" else DIGIT_FONTS_TEST)
                elif name == "emoji":
                    img = emoji(rng, cls, split == "test")
                else:
                    img = make(rng, cls)
                if img.size != (SIZE, SIZE):
                    img = img.resize((SIZE, SIZE))
                if rng.random() < 0.3:
                    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
                save(img, root, split, cls, i)
    print(f"{root}: {len(classes)} classes, {n_train} + {n_test} images each")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--dev", action="store_true", help="the two development sets instead of the new kinds")
    p.add_argument("--only", nargs="*", help="just these sets")
    p.add_argument("--train", type=int, default=20, help="images per class in train/ (80/20 split by compare)")
    p.add_argument("--test", type=int, default=40, help="held-out images per class")
    p.add_argument("--seed", type=int, default=2026)
    a = p.parse_args()
    names = a.only or (DEV if a.dev else [n for n in SETS if n not in DEV])
    for k, name in enumerate(names):
        build(name, a.out, a.train, a.test, a.seed + k)


if __name__ == "__main__":
    main()
