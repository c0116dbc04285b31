/** `--size N` or `--size HxW`, checked. */
import { UsageError } from './errors.ts';

/** Far beyond any backbone's input, far below what would exhaust memory for one batch. */
const MAX_SIZE = 4096;

export function parseSize(s: string): [number, number] {
  const m = s.match(/^(\d+)(?:[x×,](\d+))?$/);
  const size: [number, number] = [Number(m?.[1]), Number(m?.[2] ?? m?.[1])];
  if (!m || size.some((v) => v < 8 || v > MAX_SIZE)) throw new UsageError(`--size ${s}: use N or HxW with sides from 8 to ${MAX_SIZE}, e.g. 224 or 150x150`);
  return size;
}

