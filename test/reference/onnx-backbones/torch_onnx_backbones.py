"""PyTorch reference for ONNX backbones (issue 14): what torch says at two cuts of each model.

  /work/venv-torch/bin/python test/reference/onnx-backbones/torch_onnx_backbones.py [names...]

For each model (seeded random weights, eval mode) it
  - first makes the random weights non-degenerate (liven(), see there);
  - exports the plain model with torch.onnx.export (TorchScript exporter, dynamo=False, so node
    names read like /layer4/layer4.2/relu_2/Relu_output_0), input `pixel_values` NCHW float32
    with a dynamic batch axis, output `logits`, to fixtures/generated/onnx-backbones/<name>.onnx
    (git-ignored);
  - runs it in PyTorch on inputs.f32 (make_inputs.ts) with forward hooks at two cuts a user would
    pick (a CNN's last spatial map and pooled embedding; a ViT's final normed tokens and the head's
    input), and writes those outputs and the logits as <name>.<label>.f32 (float32 little-endian);
  - finds the ONNX tensor name of each cut: every node output becomes a graph output, onnxruntime
    runs the file on the same inputs, and of the tensors whose shape matches and whose values are
    allclose to the hook's, the closest is the cut (ties: the first in graph order, i.e. the op
    that produces it, not a later copy); the others are listed as also_matching;
  - measures max |onnxruntime - torch| at each cut and the logits with a session (default graph
    optimisations) whose outputs are just those tensors, and checks the batch axis really is
    dynamic (batch 1 and 3 run and agree with batch 2);
  - writes manifest.json beside this file.
"""
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import timm
import torch
import torchvision

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ONNX_DIR = ROOT / 'fixtures' / 'generated' / 'onnx-backbones'
COMMAND = '/work/venv-torch/bin/python test/reference/onnx-backbones/torch_onnx_backbones.py'
OPSET = 17
SEED = 0
THREADS = 2


@dataclass(frozen=True)
class Cut:
    label: str
    module: str  # dotted path of the hooked module
    side: str  # 'output' of that module, or its 'input'
    layout: str  # 'nchw' | 'tokens' | 'vector'


@dataclass(frozen=True)
class Spec:
    name: str
    source: str
    build: Callable[[], torch.nn.Module]
    cuts: tuple[Cut, ...]
    note: str = ''


def tv(name: str) -> Callable[[], torch.nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None)


def tm(name: str, **kwargs: object) -> Callable[[], torch.nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, **kwargs)


VIT_CUTS = (Cut('tokens', 'norm', 'output', 'tokens'), Cut('embedding', 'head', 'input', 'vector'))
SPECS = [
    Spec('resnet50', 'torchvision', tv('resnet50'),
         (Cut('layer4', 'layer4', 'output', 'nchw'), Cut('embedding', 'fc', 'input', 'vector'))),
    Spec('convnext_tiny', 'torchvision', tv('convnext_tiny'),
         (Cut('features', 'features', 'output', 'nchw'), Cut('embedding', 'classifier.2', 'input', 'vector')),
         'embedding is after the head LayerNorm2d (classifier.0) and Flatten, i.e. the Linear input'),
    Spec('efficientnet_b0', 'torchvision', tv('efficientnet_b0'),
         (Cut('features', 'features', 'output', 'nchw'), Cut('embedding', 'classifier.1', 'input', 'vector'))),
    Spec('vit_small_patch16_224', 'timm', tm('vit_small_patch16_224'), VIT_CUTS,
         'tokens: cls + 14x14 patches; embedding: the cls token after the final norm (global_pool=token)'),
    Spec('vit_small_patch14_dinov2', 'timm', tm('vit_small_patch14_dinov2', img_size=224, num_classes=1000), VIT_CUTS,
         'img_size=224 (16x16 patches of 14 px; timm default is 518); num_classes=1000 so it has logits '
         '(the released DINOv2 has no head: its output would be the embedding)'),
]


def module_at(model: torch.nn.Module, dotted: str) -> torch.nn.Module:
    return model.get_submodule(dotted)


def liven(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Makes the seeded random model non-degenerate, so that every block shows in the cuts.

    As built, torchvision's EfficientNet shrinks its signal ~10x per stage (kaiming fan_out on
    depthwise convs; eval BN with mean 0 / var 1 does not renormalise: 1e-13 at the end), and
    ConvNeXt's (1e-6) and DINOv2's (1e-5) layer scales make every residual block an identity, so
    a cut at the last stage would equal one several blocks earlier. Here, from a generator seeded
    with SEED: layer scales (torchvision CNBlock.layer_scale, timm LayerScale.gamma) ~ U(0.5, 1),
    every norm's affine weight ~ U(0.75, 1.25) and bias ~ U(-0.1, 0.1), then BatchNorm running
    statistics are recomputed from one train-mode pass over the inputs (momentum=None, all other
    modules in eval mode).
    """
    g = torch.Generator().manual_seed(SEED)
    norms = (torch.nn.LayerNorm, torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit('.', 1)[-1] in ('layer_scale', 'gamma'):
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.0, generator=g))
        bns = []
        for m in model.modules():
            if isinstance(m, norms) and getattr(m, 'weight', None) is not None:
                m.weight.copy_(torch.empty_like(m.weight).uniform_(0.75, 1.25, generator=g))
                m.bias.copy_(torch.empty_like(m.bias).uniform_(-0.1, 0.1, generator=g))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
                m.train()
                bns.append(m)
        if bns:
            model(x)
    model.eval()


def torch_outputs(model: torch.nn.Module, spec: Spec, x: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for cut in spec.cuts:
        def hook(_m: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, cut: Cut = cut) -> None:
            captured[cut.label] = (output if cut.side == 'output' else inputs[0]).detach().clone()
        handles.append(module_at(model, cut.module).register_forward_hook(hook))
    with torch.inference_mode():
        logits = model(x)
    for h in handles:
        h.remove()
    return {k: v.numpy() for k, v in captured.items()}, logits.numpy()


def export(model: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=OPSET,
        input_names=['pixel_values'], output_names=['logits'],
        dynamic_axes={'pixel_values': {0: 'batch'}, 'logits': {0: 'batch'}},
    )


def session(model: onnx.ModelProto, optimise: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=['CPUExecutionProvider'])


def with_outputs(path: Path, names: list[str]) -> onnx.ModelProto:
    model = onnx.load(str(path))
    del model.graph.output[:]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    return model


def close(a: np.ndarray, ref: np.ndarray) -> bool:
    return a.shape == ref.shape and np.allclose(a, ref, rtol=1e-3, atol=1e-4 * float(np.abs(ref).max()))


def find_tensors(path: Path, x: np.ndarray, refs: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Every node output whose value matches each reference, closest first (ties in graph order)."""
    graph = onnx.load(str(path)).graph
    names = [o for node in graph.node for o in node.output if o]
    values = session(with_outputs(path, names), optimise=False).run(names, {'pixel_values': x})
    found = {}
    for label, ref in refs.items():
        matches = [(float(np.abs(v - ref).max()), i, n) for i, (n, v) in enumerate(zip(names, values)) if close(v, ref)]
        found[label] = [n for _, _, n in sorted(matches)]
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_f32(path: Path, a: np.ndarray) -> None:
    path.write_bytes(np.ascontiguousarray(a, dtype='<f4').tobytes())


def run(spec: Spec, x: np.ndarray) -> dict[str, object]:
    torch.manual_seed(SEED)
    model = spec.build().eval()
    liven(model, torch.from_numpy(x))
    onnx_path = ONNX_DIR / f'{spec.name}.onnx'
    export(model, onnx_path)
    refs, logits = torch_outputs(model, spec, torch.from_numpy(x))

    found = find_tensors(onnx_path, x, refs)
    tensors: dict[str, str] = {}
    for cut in spec.cuts:
        if not found[cut.label]:
            raise SystemExit(f'{spec.name}: no ONNX tensor matches {cut.label} {refs[cut.label].shape}')
        tensors[cut.label] = found[cut.label][0]

    names = [tensors[c.label] for c in spec.cuts] + ['logits']
    sess = session(with_outputs(onnx_path, names), optimise=True)
    got = dict(zip(names, sess.run(names, {'pixel_values': x})))
    for n in (1, 3):  # the batch axis is dynamic: other batch sizes run and give the same rows
        xb = np.concatenate([x, x])[:n]
        out = sess.run(['logits'], {'pixel_values': xb})[0]
        ref = np.concatenate([got['logits'], got['logits']])[:n]
        if not np.allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max())):
            raise SystemExit(f'{spec.name}: batch {n} disagrees with batch 2')

    cuts = []
    for cut in spec.cuts:
        ref = refs[cut.label]
        file = f'{spec.name}.{cut.label}.f32'
        write_f32(HERE / file, ref)
        cuts.append({
            'label': cut.label,
            'tensor': tensors[cut.label],
            'shape': list(ref.shape),
            'layout': cut.layout,
            'file': file,
            'torch_module': cut.module,
            'torch_hook': cut.side,
            'also_matching': found[cut.label][1:],
            'max_abs_err_onnxruntime': float(np.abs(got[tensors[cut.label]] - ref).max()),
            'max_abs_value': float(np.abs(ref).max()),
            'std': float(ref.std()),
        })
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    batch = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    logits_file = f'{spec.name}.logits.f32'
    write_f32(HERE / logits_file, logits)
    entry = {
        'name': spec.name,
        'source': spec.source,
        'onnx': str(onnx_path.relative_to(ROOT)),
        'sha256': sha256(onnx_path),
        'onnx_bytes': onnx_path.stat().st_size,
        'input_shape': batch,
        'op_types': sorted({n.op_type for n in graph.node}),
        'cuts': cuts,
        'logits': {
            'file': logits_file,
            'tensor': 'logits',
            'shape': list(logits.shape),
            'max_abs_err_onnxruntime': float(np.abs(got['logits'] - logits).max()),
            'max_abs_value': float(np.abs(logits).max()),
        },
    }
    if spec.note:
        entry['note'] = spec.note
    return entry


def main() -> None:
    torch.set_num_threads(THREADS)
    wanted = sys.argv[1:] or [s.name for s in SPECS]
    unknown = set(wanted) - {s.name for s in SPECS}
    if unknown:
        raise SystemExit(f'unknown models: {", ".join(sorted(unknown))}')
    inputs = json.loads((HERE / 'inputs.json').read_text())
    x = np.fromfile(HERE / 'inputs.f32', dtype='<f4').reshape(inputs['shape'])

    manifest_path = HERE / 'manifest.json'
    previous = json.loads(manifest_path.read_text())['models'] if manifest_path.exists() else []
    models = {m['name']: m for m in previous}
    for spec in SPECS:
        if spec.name in wanted:
            models[spec.name] = run(spec, x)
            print(json.dumps({'model': spec.name, **{c['label']: [c['tensor'], c['shape'], c['max_abs_err_onnxruntime']] for c in models[spec.name]['cuts']}}), flush=True)

    manifest = {
        'torch': torch.__version__,
        'torchvision': torchvision.__version__,
        'timm': timm.__version__,
        'onnx': onnx.__version__,
        'onnxruntime': ort.__version__,
        'numpy': np.__version__,
        'exporter': f'torch.onnx.export(dynamo=False, opset_version={OPSET}), input pixel_values [batch,3,224,224], output logits [batch,1000]',
        'weights': f'random: torch.manual_seed({SEED}) before building each model (weights=None / pretrained=False), then liven(): '
                   'layer scales ~ U(0.5, 1), norm affine weight ~ U(0.75, 1.25) and bias ~ U(-0.1, 0.1), BatchNorm running '
                   'stats from one train-mode pass over inputs.f32; eval mode',
        'inputs': 'inputs.f32 (inputs.json)',
        'match': 'ONNX tensor = the node output closest to torch (ties: first in graph order) among those with the same shape and np.allclose(rtol=1e-3, atol=1e-4*max|torch|), onnxruntime without graph optimisations',
        'error': 'max_abs_err_onnxruntime: onnxruntime (CPU, default optimisations) with the cut tensors as graph outputs, against torch',
        'command': COMMAND + ' [names...]',
        'models': [models[s.name] for s in SPECS if s.name in models],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + '\n')


if __name__ == '__main__':
    main()
