"""Unlearning on generated image folders: RA, TA, UA and the forget set's confidence, before and after.

The folders are the kind a user brings (docs/your-data.md): `colours` draws noisy one-colour
PNGs, one colour per class, the colours `--apart` apart (docs/your-data.md's toy folder at
`--size 8`); `shapes` draws circles, squares, triangles, crosses, bars and rings (one shape a
class) of random colour, size and place on a noisy background; `digits` writes scikit-learn's
real handwritten digits (1 797 grey 8×8 images, 10 classes, no download) resized to `--size`,
a fifth of each class (by `--draw`) as the test split. `--draw` seeds the images, so a new
draw is data nothing was tuned on. Each model is trained once with the folder recipe
(`--train-lr`, `--epochs` override it; vit-tiny does not train at the recipe's lr 0.05) and
cached; each method then runs at its defaults on the task at its own default γ (LTU 0.3, the
baselines 1), one thread. Rows are appended to `OUT/rows.jsonl` as they finish and a rerun
skips them; the table is printed at the end, then one JSON line with every row.

    python benchmarks/image_folders.py --out folders --kind colours --per-class 100 --size 16 \\
        --noise 55 --draw 4 --models vit-tiny --train-lr 0.01 --methods ltu,ft,salun,l1-sparse
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import unlearnkit as uk
from unlearnkit.engine.checkpoint import atomic_write_bytes

SHAPES = ("circle", "square", "triangle", "cross", "bar", "ring")


def colour_image(rng: np.random.Generator, label: int, size: int, noise: float, apart: float) -> np.ndarray:
    """One colour per class: grey 100 raised by `apart` in channel label % 3 (and by `apart` / 2
    per further round of three), plus Gaussian noise of std `noise`."""
    rgb = np.full(3, 100.0)
    rgb[label % 3] += apart * (1 + label // 3 / 2)
    return np.clip(rgb + rng.normal(0, noise, (size, size, 3)), 0, 255).astype(np.uint8)


def shape_image(rng: np.random.Generator, label: int, size: int, noise: float, apart: float) -> np.ndarray:
    """Shape `SHAPES[label]` of a random colour, size and place on a noisy grey background (`apart` unused)."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    r = rng.uniform(0.25, 0.4) * size
    cy, cx = rng.uniform(r, size - r, 2)
    dy, dx = yy - cy, xx - cx
    mask = {
        "circle": dy**2 + dx**2 <= r**2,
        "square": (abs(dy) <= r * 0.8) & (abs(dx) <= r * 0.8),
        "triangle": (dy <= r * 0.8) & (abs(dx) <= (dy + r * 0.8) / 1.6),
        "cross": ((abs(dy) <= r / 4) | (abs(dx) <= r / 4)) & (abs(dy) <= r) & (abs(dx) <= r),
        "bar": (abs(dy) <= r / 4) & (abs(dx) <= r),
        "ring": (dy**2 + dx**2 <= r**2) & (dy**2 + dx**2 >= (r * 0.55) ** 2),
    }[SHAPES[label]]
    image = rng.normal(110, noise, (size, size, 3))
    image[mask] = rng.uniform(0, 255, 3) + rng.normal(0, noise / 3, (int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_digits(root: Path, *, size: int, draw: int) -> Path:
    """scikit-learn's 8×8 digits as `root/{train,test}/<digit>/*.png`, `size` px, a fifth of each class to test."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(draw)
    for label in range(10):
        positions = rng.permutation(np.flatnonzero(digits.target == label))
        n_test = len(positions) // 5
        for split, part in (("test", positions[:n_test]), ("train", positions[n_test:])):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels).convert("RGB").resize((size, size), Image.BILINEAR).save(folder / f"{i:04d}.png")
    return root


def write_folder(root: Path, *, kind: str, classes: int, per_class: int, size: int, noise: float, apart: float, draw: int) -> Path:
    """`root/train/<class>/*.png` (`per_class` each) and `root/test/<class>/*.png` (a quarter as many)."""
    from PIL import Image

    if kind == "digits":
        return write_digits(root, size=size, draw=draw)
    if kind == "shapes" and classes > len(SHAPES):
        raise SystemExit(f"--classes {classes}: shapes has {len(SHAPES)} classes at most")
    draw_image = shape_image if kind == "shapes" else colour_image
    rng = np.random.default_rng(draw)
    for split, n in (("train", per_class), ("test", max(1, per_class // 4))):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(draw_image(rng, label, size, noise, apart)).save(folder / f"{i:04d}.png")
    return root


def forget_confidence(model: torch.nn.Module, data: uk.ArrayDataset) -> float:
    """The mean probability of the true class over `data`."""
    logits = uk.predict_logits(model, data)
    return torch.softmax(logits, 1).gather(1, data.y[:, None]).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the images, the models and rows.jsonl")
    parser.add_argument("--kind", choices=("colours", "shapes", "digits"), default="colours")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=100, help="training images per class (a quarter as many test images)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--noise", type=float, default=55.0, help="std of the pixel noise")
    parser.add_argument("--apart", type=float, default=35.0, help="colours: how far apart the class colours are")
    parser.add_argument("--draw", type=int, default=0, help="seed of the images")
    parser.add_argument("--models", default="torchvision:resnet18", help="comma-separated model names")
    parser.add_argument("--train-lr", type=float, default=None, help="the recipe's lr for training the originals (default: the folder recipe's)")
    parser.add_argument("--epochs", type=int, default=None, help="the recipe's epochs (default: the folder recipe's)")
    parser.add_argument("--methods", default="ltu,ft,salun,l1-sparse")
    parser.add_argument("--forget", default="random:0.1")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    name = (f"digits-s{args.size}-draw{args.draw}" if args.kind == "digits" else
            f"{args.kind}-c{args.classes}-n{args.per_class}-s{args.size}-noise{args.noise:g}-apart{args.apart:g}-draw{args.draw}")
    root = args.out / name
    if not root.exists():  # drawn beside it and renamed, so a killed draw is never taken for a whole one
        partial = args.out / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        write_folder(partial, kind=args.kind, classes=args.classes, per_class=args.per_class, size=args.size,
                     noise=args.noise, apart=args.apart, draw=args.draw)
        partial.rename(root)
    rows_file = args.out / "rows.jsonl"
    done = [json.loads(line) for line in rows_file.read_text().splitlines() if line.endswith("}")] if rows_file.exists() else []
    rows = list(done)  # a line cut short by a kill is left out, and its row run again

    @functools.cache  # one task per γ, shared by the models and methods
    def task_for(gamma: float) -> uk.UnlearningTask:
        task = uk.make_task(f"folder:{root}", forget=args.forget, retain_access=gamma, seed=args.seed, data_dir=args.out / "cache")
        changes = {k: v for k, v in (("lr", args.train_lr), ("epochs", args.epochs)) if v is not None}
        task.recipe = uk.TrainConfig(**{**uk.unstructure_config(task.recipe), **changes})
        return task

    for model_name in args.models.split(","):
        task = task_for(1.0)
        recipe = task.recipe
        checkpoint = args.out / "models" / f"{name}-{model_name.replace(':', '_')}-lr{recipe.lr:g}-e{recipe.epochs}-seed{args.seed}.pt"
        model = uk.build_model(model_name, task, seed=args.seed)
        if checkpoint.exists():
            model.load_state_dict(torch.load(checkpoint, weights_only=True))
        else:
            model = uk.train_model(model, task.train, recipe=recipe, seed=args.seed)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            atomic_write_bytes(checkpoint, buffer.getvalue())
        model.eval()
        before, confidence = uk.evaluate(model, task, attack=None), forget_confidence(model, task.forget)
        for method in args.methods.split(","):
            key = {"folder": name, "model": model_name, "train_lr": recipe.lr, "epochs": recipe.epochs, "method": method, "seed": args.seed, "forget": args.forget}
            if any(all(row.get(k) == v for k, v in key.items()) for row in done):
                continue
            unlearner = uk.get_unlearner(method)
            gamma = type(unlearner).default_retain_access
            view_task = task_for(gamma)
            start = time.perf_counter()
            new = unlearner.unlearn(model, view_task.view(unlearner.reads, who=method), seed=args.seed)
            seconds = time.perf_counter() - start
            after = uk.evaluate(new, task, attack=None)
            row = {**key, "gamma": gamma, "before": before, "after": after,
                   "forget_confidence": [confidence, forget_confidence(new, task.forget)],
                   "seconds": seconds, "resolved": unlearner.run_info.get("resolved", {}),
                   "unchanged": bool(unlearner.run_info.get("unchanged", False))}
            with rows_file.open("a") as out:
                out.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{model_name} {method}: RA {before['RA']:.1f} -> {after['RA']:.1f}, TA {before['TA']:.1f} -> {after['TA']:.1f}", flush=True)

    print("| folder | model (train lr) | method | RA before → after | TA before → after | UA after | forget confidence | time |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        b, a, (c0, c1) = row["before"], row["after"], row["forget_confidence"]
        method = row["method"] + (" (weights unchanged)" if row.get("unchanged") else "")
        print(f"| {row['folder']} | {row['model']} ({row['train_lr']:g}) | {method} | {b['RA']:.1f} → {a['RA']:.1f} | "
              f"{b['TA']:.1f} → {a['TA']:.1f} | {a['UA']:.1f} | {c0:.4f} → {c1:.4f} | {row['seconds']:.0f} s |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
