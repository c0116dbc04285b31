"""Bare forward throughput of reference models in PyTorch eager, on CPU.

  /work/venv-torch/bin/python bench/reference/torch_forward.py --batch 8 --seconds 5
  # options: --models resnet50,convnext_tiny,efficientnet_b0,vit_small_patch16_224,vit_small_patch14_dinov2
  #          --batch 8 --threads N (default: every core this process may use) --seconds 10 --warmup 2

The models of test/reference/onnx-backbones (the default; bench:onnx-backbones), and the
torchvision twins of the built-in backbones cut where bottleneck cuts them by default (the
*_features models; bench:engines): vgg16 to block5_pool, squeezenet1_1 to fire9 + global average
pool at 227x227, resnet50 / mobilenet_v2 / efficientnet_b0 to their global average pool. All are
built with random weights (the cost does not depend on them), eval mode, under
torch.inference_mode(), on one fixed random batch: --warmup untimed runs, then timed runs until
--seconds have passed. Prints one JSON line per model:
{model, batch, size, threads, img_per_s, runs, seconds, torch}.
"""
import argparse
import json
import os
import time
from typing import Callable

import timm
import torch
import torchvision


def tv(name: str) -> Callable[[], torch.nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None)


def tm(name: str, **kwargs: object) -> Callable[[], torch.nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, **kwargs)


def tv_pooled(name: str) -> Callable[[], torch.nn.Module]:
    """The network without its classifier: features, then the global average pool."""
    def build() -> torch.nn.Module:
        net = getattr(torchvision.models, name)(weights=None)
        if name.startswith('resnet'):
            return torch.nn.Sequential(*list(net.children())[:-1])
        return torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1))
    return build


DEFAULT_MODELS = ['resnet50', 'convnext_tiny', 'efficientnet_b0', 'vit_small_patch16_224', 'vit_small_patch14_dinov2']
MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    'vgg16_features': lambda: torchvision.models.vgg16(weights=None).features,
    'squeezenet1_1_features': tv_pooled('squeezenet1_1'),
    'resnet50_features': tv_pooled('resnet50'),
    'mobilenet_v2_features': tv_pooled('mobilenet_v2'),
    'efficientnet_b0_features': tv_pooled('efficientnet_b0'),
    'resnet50': tv('resnet50'),
    'convnext_tiny': tv('convnext_tiny'),
    'efficientnet_b0': tv('efficientnet_b0'),
    'vit_small_patch16_224': tm('vit_small_patch16_224'),
    'vit_small_patch14_dinov2': tm('vit_small_patch14_dinov2', img_size=224, num_classes=1000),
}
SIZES = {'squeezenet1_1_features': 227}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', default=','.join(DEFAULT_MODELS))
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument('--seconds', type=float, default=10.0, help='timed seconds per model')
    ap.add_argument('--warmup', type=int, default=2, help='untimed runs first')
    args = ap.parse_args()
    names = [n for n in args.models.split(',') if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f'unknown models: {", ".join(unknown)} (known: {", ".join(MODELS)})')

    torch.set_num_threads(args.threads)
    for name in names:
        torch.manual_seed(0)
        model = MODELS[name]().eval()
        size = SIZES.get(name, 224)
        x = torch.randn(args.batch, 3, size, size)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(x)
            runs = 0
            t0 = time.perf_counter()
            while True:
                model(x)
                runs += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= args.seconds:
                    break
        print(json.dumps({
            'model': name,
            'batch': args.batch,
            'size': size,
            'threads': args.threads,
            'img_per_s': round(runs * args.batch / elapsed, 3),
            'runs': runs,
            'seconds': round(elapsed, 2),
            'torch': torch.__version__,
        }), flush=True)


if __name__ == '__main__':
    main()
