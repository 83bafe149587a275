"""Channel criteria over training seeds: accuracy right after removing channels, mean ± sd.

    .venv/bin/python benchmarks/channel_criteria.py [--seeds 5] [--amounts 0.25 0.5 0.75]

A script that prints measured numbers (never a timed test). Lesson 1 compares the criteria of
``course_utils.pruning.channel_importance`` on the one cached CourseCNN; one model is one draw
of training. Here each seed trains its own CourseCNN with the ``course_cnn`` recipe (8 epochs,
digits, 1 thread, a few seconds each), removes ``amount`` of the channels of both convs by each
criterion (``random``: 5 draws per model), and measures accuracy on validation + test (539
digits) without fine-tuning. The table gives mean ± sd over seeds, so a criterion is better only
when the gap exceeds that spread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import ConcatDataset, DataLoader  # noqa: E402

from course_utils import pruning  # noqa: E402
from course_utils.data import load_digits_dataset  # noqa: E402
from course_utils.metrics import mean_sd  # noqa: E402
from course_utils.models import CourseCNN  # noqa: E402
from course_utils.training import RECIPES, evaluate, seed_everything, train  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--random-draws", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recipe = RECIPES["course_cnn"]
    splits = load_digits_dataset(image_size=recipe.image_size)
    held_out = DataLoader(ConcatDataset([splits.val, splits.test]), batch_size=256)
    acc: dict[tuple[float, str], list[float]] = {}
    dense_acc = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        seed_everything(seed)
        model = CourseCNN(image_size=recipe.image_size)
        train(
            model,
            splits.loaders(recipe.batch_size, seed=seed),
            epochs=recipe.epochs,
            lr=recipe.lr,
            progress=False,
        )
        dense_acc.append(evaluate(model.eval(), held_out))
        for amount in args.amounts:
            for crit in pruning.CHANNEL_CRITERIA:
                draws = range(seed * 100, seed * 100 + args.random_draws) if crit == "random" else [0]
                for d in draws:
                    slim = pruning.remove_channels(model, amount, criterion=crit, seed=d)
                    acc.setdefault((amount, crit), []).append(evaluate(slim, held_out))
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    m, s = mean_sd(dense_acc)
    print(
        f"dense CourseCNN over {args.seeds} seeds: {100 * m:.1f} % ± {100 * s:.1f} (val + test, 539 digits)"
    )
    print("accuracy right after removing channels of both convs, no fine-tuning: mean ± sd over seeds")
    print(f"(random: {args.random_draws} draws per seed pooled)\n")
    print("criterion   " + "".join(f"{f'{a:.0%} removed':>18}" for a in args.amounts))
    for crit in pruning.CHANNEL_CRITERIA:
        cells = []
        for amount in args.amounts:
            m, s = mean_sd(acc[(amount, crit)])
            cells.append(f"{100 * m:8.1f} % ± {100 * s:4.1f}")
        print(f"{crit:11s} " + "".join(f"{c:>18}" for c in cells))
    print(
        f"\n{time.perf_counter() - start:.0f} s, 1 thread; default criterion: {pruning.DEFAULT_CHANNEL_CRITERION}"
    )


if __name__ == "__main__":
    main()
