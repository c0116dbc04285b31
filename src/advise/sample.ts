/**
 * Which images advise runs through the classifier. Running it on every image would be slow, and
 * a random pick would give different numbers on every run; a hashed pick is cheap, repeatable
 * and balanced over the classes.
 */
import { createHash } from 'node:crypto';
import type { DatasetItem } from '../extract/dataset.ts';
import { hashUnit } from '../train-head/splits.ts';
import { cmp, groupBy } from './arrays.ts';

/** Images sampled for the similarity measurement when `sample` is not given. */
export const DEFAULT_SAMPLE = 64;

/**
 * `n` images spread evenly over the classes, round robin, each class's images taken in the order
 * of a hash of (seed, path): the same folder and seed always give the same sample, and adding
 * images moves it only where a new image hashes before the chosen ones. With more classes than
 * `n`, the classes taking part are chosen by hash too.
 */
export function pickSample<T extends DatasetItem>(items: readonly T[], n: number, seed = 0): T[] {
  const h = (s: string) => hashUnit(createHash('sha256').update(`${seed}\0${s}`).digest('hex'));
  const byClass = [...groupBy(items, (i) => i.label).entries()]
    .map(([label, group]) => ({ key: h(`class\0${label}`), queue: group.map((item) => ({ item, key: h(item.path) })).sort((a, b) => a.key - b.key || cmp(a.item.path, b.item.path)) }))
    .sort((a, b) => a.key - b.key);
  const picked: T[] = [];
  for (let round = 0; picked.length < n; round++) {
    let took = false;
    for (const c of byClass) {
      if (picked.length >= n) break;
      if (round < c.queue.length) {
        picked.push(c.queue[round].item);
        took = true;
      }
    }
    if (!took) break;
  }
  return picked;
}
