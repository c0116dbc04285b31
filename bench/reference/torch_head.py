"""PyTorch reference for bench/train-head: the Keras-blog head trained on random codes.

  /work/venv-torch/bin/python bench/reference/torch_head.py [--rows 2000] [--dim 4096] [--classes 2] [--epochs 50]
                                                 [--batch 32] [--threads 2] [--seed 0] [--json]

Flatten -> Dense(256, relu) -> Dropout(0.5) -> Dense(classes), softmax cross-entropy, Adam (lr 1e-3),
shuffled mini-batches every epoch (like Keras fit). Codes and labels are seeded random numbers.
"""
import argparse
import json
import time

import torch
from torch import nn

from common import blas_in_use, peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rows', type=int, default=2000)
    ap.add_argument('--dim', type=int, default=4096)
    ap.add_argument('--classes', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=50)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.randn(args.rows, args.dim)
    y = torch.randint(0, args.classes, (args.rows,))
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(args.dim, 256), nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, args.classes),
    )
    loss_fn = nn.CrossEntropyLoss()  # softmax + categorical cross-entropy
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)

    head.train()
    epoch_seconds, loss = [], float('nan')
    t_all = time.perf_counter()
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        total = 0.0
        for idx in torch.randperm(args.rows).split(args.batch):
            opt.zero_grad(set_to_none=True)
            batch_loss = loss_fn(head(x[idx]), y[idx])
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(idx)
        loss = total / args.rows
        epoch_seconds.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - t_all

    result = {
        'rows': args.rows, 'dim': args.dim, 'classes': args.classes, 'epochs': args.epochs,
        'batch': args.batch, 'threads': args.threads,
        'seconds': round(seconds, 3),
        'seconds_per_epoch': round(seconds / args.epochs, 3),
        'epoch_seconds': [round(s, 3) for s in epoch_seconds],
        'final_loss': round(loss, 4),
        'peak_rss_mb': round(peak_rss_mb(), 1),
        'torch_version': torch.__version__,
        'blas': blas_in_use(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.epochs} epochs of {args.rows}x{args.dim} (batch {args.batch}, {args.threads} threads): "
              f"{seconds:.2f} s, {result['seconds_per_epoch']} s/epoch, final loss {result['final_loss']}; "
              f"torch {torch.__version__}; BLAS {result['blas']}")


if __name__ == '__main__':
    main()
