import { mulberry32 } from '../src/backbones/zoo/random-weights.ts';
import { fit } from '../src/train-head/fit.ts';
import { initHeadParams } from '../src/train-head/head-init.ts';
import { createOnnxTrainer } from '../src/train-head/onnx-trainer.ts';
import type { HeadArchitecture, OptimizerConfig } from '../src/train-head/trainer.ts';
const dim = 4096, rows = 2000, epochs = 5;
const architecture: HeadArchitecture = { inputDim: dim, hidden: [256], dropout: 0.5, classes: 2 };
const random = mulberry32(1);
const x = Float32Array.from({ length: rows * dim }, () => random());
const y = Int32Array.from({ length: rows }, () => (random() < 0.5 ? 0 : 1));
const opts: OptimizerConfig[] = [
  { kind: 'sgd', lr: 1e-3, momentum: 0 },
  { kind: 'sgd', lr: 1e-3, momentum: 0.9 },
  { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
] as OptimizerConfig[];
for (const optimizer of opts) {
  const trainer = await createOnnxTrainer({ architecture, training: { optimizer, l2: 0 }, initial: initHeadParams(architecture, 1), maxBatch: 256 });
  await fit({ trainer, architecture, train: { x, y, n: rows }, epochs: 1, batch: 32, seed: 1, classWeights: null, patience: null, evaluate: false });
  const t = performance.now();
  await fit({ trainer, architecture, train: { x, y, n: rows }, epochs, batch: 32, seed: 1, classWeights: null, patience: null, evaluate: false });
  console.log(optimizer.kind, (optimizer as {momentum?: number}).momentum ?? '', ((performance.now() - t) / 1000 / epochs).toFixed(3), 's/epoch');
  await trainer.dispose();
}
