/** `--trainer auto|onnx|tfjs`: the head trainer to use here. */
import { tfBackend } from '../engines/tfjs-backend.ts';
import { isInstalled } from '../util/installed.ts';
import { createOnnxTrainer } from './onnx-trainer.ts';
import { createTfjsTrainer } from './tfjs-trainer.ts';
import type { HeadTrainer, TrainerOptions } from './trainer.ts';

export async function createTrainer(choice: 'auto' | 'onnx' | 'tfjs', opts: TrainerOptions): Promise<HeadTrainer> {
  if (choice === 'onnx') return createOnnxTrainer(opts);
  if (choice === 'tfjs') return createTfjsTrainer(opts);
  // TF.js is only faster where its native GPU backend runs; everywhere else the ONNX trainer wins.
  if (!isInstalled('@tensorflow/tfjs-node-gpu')) return createOnnxTrainer(opts);
  const backend = await tfBackend('auto');
  return backend.provider === 'tensorflow-gpu' ? createTfjsTrainer(opts) : createOnnxTrainer(opts);
}
