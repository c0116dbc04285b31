"""PyTorch reference for bench/extract: a backbone's codes over a folder of images.

  /work/venv-torch/bin/python bench/reference/torch_extract.py DIR [--model vgg16|resnet50|vit_small_patch16_224]
      [--batch 8] [--threads 2] [--workers 1] [--limit N] [--forward-runs 3]
      [--config eager|channels_last|compile|bf16] [--json]

--model: vgg16, torchvision's vgg16 features (to block5_pool, Caffe BGR mean, as Keras' VGG16);
resnet50, torchvision's resnet50 without its fc (the 2048-d pooled code); vit_small_patch16_224,
timm's with num_classes=0 (the pooled 384-d code). The last two with ImageNet mean/std in RGB:
the networks of test/reference/onnx-backbones, which bottleneck runs from their ONNX export.

--config: PyTorch 2.x on a CPU at its best. eager: plain fp32; channels_last: fp32 with NHWC memory
format (oneDNN's preferred layout); compile: channels_last + torch.compile (inductor; compiled
before timing); bf16: channels_last + torch.autocast(bfloat16), which oneDNN runs on AVX512-BF16 or
AMX where the CPU has them.

Decodes with PIL in a DataLoader (squash-resize to 224x224 bilinear, then the model's channel order
and normalisation), runs the model with random weights (the cost does not depend on the values),
and reports end-to-end img/s (decode + forward over the whole set) and the bare
forward img/s (timed separately on one fixed random batch), plus peak RSS.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from common import blas_in_use, peak_rss_mb

SIZE = 224
MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
EXTENSIONS = ('.jpg', '.jpeg', '.png')


def build(name: str) -> torch.nn.Module:
    if name == 'vgg16':
        return torchvision.models.vgg16(weights=None).features
    if name == 'resnet50':
        net = torchvision.models.resnet50(weights=None)
        return torch.nn.Sequential(*list(net.children())[:-1], torch.nn.Flatten())
    import timm
    return timm.create_model(name, pretrained=False, num_classes=0)


class ImageFolderFlat(Dataset):
    def __init__(self, files: list[str], caffe: bool):
        self.files = files
        self.caffe = caffe

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as im:
            rgb = im.convert('RGB').resize((SIZE, SIZE), Image.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float32)
        x = pixels[:, :, ::-1] - MEAN_BGR if self.caffe else (pixels - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def list_images(root: str) -> list[str]:
    found = []
    for dirpath, _, names in os.walk(root):
        found += [os.path.join(dirpath, n) for n in names if n.lower().endswith(EXTENSIONS)]
    return sorted(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('dir')
    ap.add_argument('--model', choices=['vgg16', 'resnet50', 'vit_small_patch16_224'], default='vgg16')
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--workers', type=int, default=1)
    ap.add_argument('--limit', type=int, default=0, help='use only the first N images (sorted paths)')
    ap.add_argument('--forward-runs', type=int, default=3, help='timed runs of the bare forward pass')
    ap.add_argument('--config', choices=['eager', 'channels_last', 'compile', 'bf16'], default='eager')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    files = list_images(args.dir)[: args.limit or None]
    if not files:
        sys.exit(f'no .jpg/.jpeg/.png under {args.dir}')
    model = build(args.model).eval()
    nhwc = args.config != 'eager'
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    if args.config == 'compile':
        model = torch.compile(model)
    fmt = (lambda t: t.to(memory_format=torch.channels_last)) if nhwc else (lambda t: t)
    autocast = torch.autocast('cpu', dtype=torch.bfloat16) if args.config == 'bf16' else torch.autocast('cpu', enabled=False)
    run = lambda t: model(fmt(t))

    with torch.inference_mode(), autocast:
        # Bare forward pass: warm-up (compilation, for --config compile), then --forward-runs timed runs on a fixed random batch.
        x = torch.randn(args.batch, 3, SIZE, SIZE) * (60 if args.model == 'vgg16' else 1)
        run(x)
        run(x)
        t0 = time.perf_counter()
        for _ in range(args.forward_runs):
            run(x)
        forward_ips = args.forward_runs * args.batch / (time.perf_counter() - t0)

        # End to end: decode (in --workers processes) + forward over the whole set.
        loader = DataLoader(ImageFolderFlat(files, caffe=args.model == 'vgg16'), batch_size=args.batch, num_workers=args.workers, shuffle=False)
        n, out_shape = 0, None
        t0 = time.perf_counter()
        for batch in loader:
            out_shape = tuple(run(batch).shape[1:])
            n += batch.shape[0]
        seconds = time.perf_counter() - t0

    result = {
        'images': n,
        'seconds': round(seconds, 2),
        'img_per_s': round(n / seconds, 3),
        'forward_img_per_s': round(forward_ips, 3),
        'peak_rss_mb': round(peak_rss_mb(), 1),
        'workers_peak_rss_mb': round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
        'threads': args.threads,
        'batch': args.batch,
        'workers': args.workers,
        'code_shape': out_shape,
        'model': args.model,
        'torch_version': torch.__version__,
        'config': args.config,
        'cpu_capability': torch.backends.cpu.get_cpu_capability(),
        'blas': blas_in_use(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{n} images in {seconds:.1f} s: {result['img_per_s']} img/s end to end, "
              f"{result['forward_img_per_s']} img/s bare forward (batch {args.batch}, {args.threads} threads, "
              f"{args.workers} workers); peak RSS {result['peak_rss_mb']} MB "
              f"(workers {result['workers_peak_rss_mb']} MB); codes {out_shape}; torch {torch.__version__}; "
              f"BLAS {result['blas']}")


if __name__ == '__main__':
    main()
