"""Independent PyTorch forward pass of the Caffe-origin backbones, for cross-checking our port.

  /work/venv-torch/bin/python bench/reference/torch_caffe_backbone.py squeezenet1_1|googlenet \\
      --images IMG1 IMG2 ... [--layer fire9/concat] [--pool avg|max] [--out codes.npy] [--json]
  /work/venv-torch/bin/python bench/reference/torch_caffe_backbone.py --selftest

Reads /work/shared/models/<name>.arch.json (Caffe layer list) and <name>.safetensors (parsed by hand),
and runs the layers with torch.nn.functional following Caffe's rules (see `semantics` in the arch
json). Pooling and LRN are written out directly rather than trusting PyTorch's ceil_mode /
count_include_pad / local_response_norm; --selftest checks they agree with PyTorch's versions.

--layer names a Caffe blob (or a layer, meaning its top blob) and yields the blob's final value, so
in-place ReLU/Dropout are applied (Caffe semantics). Spatial codes are written NHWC-flattened
(H, W, C order) to match our tool; --pool avg|max pools globally over H, W first.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MODELS = os.environ.get('SHARED_MODELS', '/work/shared/models')
NETS = {'squeezenet1_1': ('squeezenet1_1', 227), 'googlenet': ('googlenet-bvlc', 224), 'googlenet-bvlc': ('googlenet-bvlc', 224)}
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# --score: ImageNet index for each file-name prefix of /work/shared/models/tinyvgg/img/*.jpeg
TINYVGG_LABELS = {'boat': 625, 'bug': 301, 'bus': 779, 'car': 817, 'espresso': 967,
                  'koala': 105, 'orange': 950, 'panda': 387, 'pepper': 945, 'pizza': 963}


def load_safetensors(path: str) -> dict[str, torch.Tensor]:
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32', (name, info['dtype'])
        start, end = info['data_offsets']
        arr = np.frombuffer(data, dtype='<f4', count=(end - start) // 4, offset=start)
        tensors[name] = torch.from_numpy(arr.reshape(info['shape']).copy())
    return tensors


def caffe_pool_size(h: int, k: int, s: int, p: int) -> int:
    """Caffe PoolingLayer::Reshape: ceil, then drop a last window that starts in the right padding."""
    out = math.ceil((h + 2 * p - k) / s) + 1
    if p > 0 and (out - 1) * s >= h + p:  # Caffe only applies this when padding is non-zero;
        out -= 1                           # with k >= s (all layers here) it cannot trigger otherwise
    return out


def caffe_pool(x: torch.Tensor, mode: str, k: tuple, s: tuple, p: tuple) -> torch.Tensor:
    """Caffe MAX/AVE pooling. MAX ignores padding; AVE sums zeros over the window clipped to
    [-p, H+p) and divides by that clipped window's full area (padding counted)."""
    (h, w), outs = x.shape[2:], []
    oh, ow = caffe_pool_size(h, k[0], s[0], p[0]), caffe_pool_size(w, k[1], s[1], p[1])
    # Pad left/top by p and right/bottom far enough for the last window, then pool without padding.
    extra_h = (oh - 1) * s[0] + k[0] - h - p[0]
    extra_w = (ow - 1) * s[1] + k[1] - w - p[1]
    fill = -math.inf if mode == 'MAX' else 0.0
    xp = F.pad(x, (p[1], max(extra_w, 0), p[0], max(extra_h, 0)), value=fill)
    if mode == 'MAX':
        return F.max_pool2d(xp, k, s)[:, :, :oh, :ow]
    sums = F.avg_pool2d(xp, k, s, divisor_override=1)[:, :, :oh, :ow]
    for n, kk, ss, pp, o in ((h, k[0], s[0], p[0], oh), (w, k[1], s[1], p[1], ow)):
        starts = torch.arange(o) * ss - pp
        outs.append((torch.clamp(starts + kk, max=n + pp) - starts).to(x.dtype))
    return sums / (outs[0][:, None] * outs[1][None, :])


def caffe_lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """ACROSS_CHANNELS: y_c = x_c / (k + alpha/size * sum_{c-size//2 .. c+size//2} x^2)^beta."""
    c = x.shape[1]
    sq = F.pad(x * x, (0, 0, 0, 0, size // 2, (size - 1) // 2))
    window = sum(sq[:, i:i + c] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def forward(layers: list[dict], weights: dict[str, torch.Tensor], data: torch.Tensor) -> dict[str, torch.Tensor]:
    blobs: dict[str, torch.Tensor] = {}
    for layer in layers:
        kind, p, name = layer['type'], layer['params'], layer['name']
        bottoms = [blobs[b] for b in layer['bottom']]
        x = bottoms[0] if bottoms else None
        if kind == 'Input':
            y = data
        elif kind == 'Convolution':
            y = F.conv2d(x, weights[f'{name}.weight'], weights.get(f'{name}.bias'), stride=tuple(p['stride']),
                         padding=tuple(p['pad']), dilation=tuple(p['dilation']), groups=p['group'])
        elif kind == 'ReLU':
            y = F.relu(x)
        elif kind == 'Dropout':
            y = x
        elif kind == 'Pooling':
            if p.get('global_pooling'):
                y = x.mean((2, 3), keepdim=True) if p['pool'] == 'AVE' else x.amax((2, 3), keepdim=True)
            else:
                y = caffe_pool(x, p['pool'], tuple(p['kernel']), tuple(p['stride']), tuple(p['pad']))
        elif kind == 'LRN':
            assert p['norm_region'] == 'ACROSS_CHANNELS'
            y = caffe_lrn(x, p['local_size'], p['alpha'], p['beta'], p['k'])
        elif kind == 'Concat':
            y = torch.cat(bottoms, dim=p['axis'])
        elif kind == 'InnerProduct':
            y = F.linear(x.flatten(1), weights[f'{name}.weight'], weights.get(f'{name}.bias'))
        elif kind == 'Softmax':
            y = torch.softmax(x, dim=p['axis'])
        else:
            raise ValueError(f'unsupported layer type {kind} ({name})')
        want = tuple(layer['output_shape'])  # InnerProduct/Softmax give [N, C]; the json says [C, 1, 1]
        if tuple(y.shape[1:]) != want and not (y.dim() == 2 and y.shape[1] == math.prod(want)):
            raise AssertionError(f'{name}: shape {tuple(y.shape[1:])}, arch json says {want}')
        blobs[layer['top'][0]] = y  # in-place layers overwrite their blob, as in Caffe
    return blobs


def preprocess(path: str, size: int) -> torch.Tensor:
    with Image.open(path) as im:
        rgb = im.convert('RGB').resize((size, size), Image.BILINEAR)
    bgr = np.asarray(rgb, dtype=np.float32)[:, :, ::-1] - MEAN_BGR
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))


def selftest() -> None:
    """Our Caffe pooling/LRN against PyTorch's ceil_mode / count_include_pad / local_response_norm."""
    g = torch.Generator().manual_seed(0)
    checked = 0
    for h in range(3, 30):
        for k, s, p in ((3, 2, 0), (3, 2, 1), (3, 1, 1), (2, 2, 0), (2, 2, 1), (5, 3, 2), (7, 1, 0), (3, 3, 1)):
            if h + 2 * p < k:
                continue
            x = torch.randn(2, 3, h, h + 1, generator=g)
            for mode in ('MAX', 'AVE'):
                ours = caffe_pool(x, mode, (k, k), (s, s), (p, p))
                if mode == 'MAX':
                    ref = F.max_pool2d(x, k, s, p, ceil_mode=True)
                else:
                    ref = F.avg_pool2d(x, k, s, p, ceil_mode=True, count_include_pad=True)
                assert ours.shape == ref.shape, (mode, h, k, s, p, ours.shape, ref.shape)
                assert torch.allclose(ours, ref, atol=1e-6), (mode, h, k, s, p)
                checked += 1
    x = torch.randn(2, 64, 5, 5, generator=g) * 50
    ref = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)
    assert torch.allclose(caffe_lrn(x, 5, 1e-4, 0.75, 1.0), ref, rtol=1e-6, atol=1e-6)
    print(f'selftest ok: {checked} pooling cases match F.max_pool2d/F.avg_pool2d(ceil_mode=True, '
          'count_include_pad=True); LRN matches F.local_response_norm')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('net', nargs='?', choices=sorted(NETS))
    ap.add_argument('--images', nargs='+', default=[])
    ap.add_argument('--layer', help='blob to output (default: the net\'s bottleneck)')
    ap.add_argument('--pool', choices=['avg', 'max'])
    ap.add_argument('--out', help='write the codes here as float32 .npy, shape [N, D]')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--json', action='store_true', help='print per-image top-5 as JSON lines')
    ap.add_argument('--score', action='store_true', help='count top-1/top-5 hits, label = TINYVGG_LABELS[file prefix]')
    ap.add_argument('--selftest', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.selftest:
        return selftest()
    if not args.net or not args.images:
        ap.error('give a net and --images')

    file_name, size = NETS[args.net]
    arch = json.load(open(os.path.join(MODELS, f'{file_name}.arch.json')))
    weights = load_safetensors(os.path.join(MODELS, f'{file_name}.safetensors'))
    classes = json.load(open(os.path.join(MODELS, 'imagenet-classes.json')))
    layer = args.layer or {'squeezenet1_1': 'fire9/concat', 'googlenet-bvlc': 'pool5/7x7_s1'}[file_name]
    tops = {l['name']: l['top'][0] for l in arch['layers']}
    blob_name = layer if any(layer in l['top'] for l in arch['layers']) else tops.get(layer)
    if blob_name is None:
        sys.exit(f'no blob or layer named {layer}')

    with torch.inference_mode():
        blobs = forward(arch['layers'], weights, torch.stack([preprocess(f, size) for f in args.images]))
    codes = blobs[blob_name]
    if codes.dim() == 4 and args.pool:
        codes = codes.mean((2, 3)) if args.pool == 'avg' else codes.amax((2, 3))
    elif codes.dim() == 4:
        codes = codes.permute(0, 2, 3, 1)  # NCHW -> NHWC, so rows flatten in H, W, C order
    codes = codes.reshape(len(args.images), -1).numpy().astype(np.float32)
    if args.out:
        np.save(args.out, codes)
        print(f'wrote {args.out}: {blob_name}{":" + args.pool if args.pool else ""} {codes.shape}', file=sys.stderr)

    top5 = blobs['prob'].flatten(1).topk(5, dim=1)
    for path, idx, pr in zip(args.images, top5.indices.tolist(), top5.values.tolist()):
        if args.json:
            print(json.dumps({'image': path, 'top5': idx, 'probs': [round(v, 7) for v in pr]}))
        else:
            print(f'{os.path.basename(path)}: ' + ', '.join(f'{i} {classes[i]} {v:.3f}' for i, v in zip(idx, pr)))
    if args.score:
        labels = [TINYVGG_LABELS.get(os.path.basename(f).split('_')[0]) for f in args.images]
        hits = [(idx[0] == t, t in idx) for idx, t in zip(top5.indices.tolist(), labels) if t is not None]
        print(f'{args.net}: top-1 {sum(h[0] for h in hits)}/{len(hits)}, top-5 {sum(h[1] for h in hits)}/{len(hits)}')


if __name__ == '__main__':
    main()
