import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { planSplits, type SplitRow } from '../src/train-head/splits.ts';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function rows(classes: Record<string, number>, salt = ''): SplitRow[] {
  return Object.entries(classes).flatMap(([label, n]) => Array.from({ length: n }, (_, i) => ({ label, sha256: sha(`${salt}${label}${i}`), split: null })));
}

describe('train/validation/test splits', () => {
  it('is stratified: every class keeps about the requested fractions', () => {
    const data = rows({ cats: 1000, dogs: 3000, birds: 400 });
    const plan = planSplits(data, { val: 0.2, test: 0.1 });
    expect(plan.source).toBe('hash');
    for (const [label, n] of [['cats', 1000], ['dogs', 3000], ['birds', 400]] as const) {
      const count = (idx: readonly number[]) => idx.filter((i) => data[i].label === label).length;
      // Binomial noise: within 4 standard deviations.
      const sd = (p: number) => 4 * Math.sqrt(n * p * (1 - p));
      expect(Math.abs(count(plan.validation) - 0.2 * n)).toBeLessThan(sd(0.2));
      expect(Math.abs(count(plan.test) - 0.1 * n)).toBeLessThan(sd(0.1));
    }
    expect(plan.train.length + plan.validation.length + plan.test.length).toBe(data.length);
  });

  it('is stable: adding images never moves an existing one', () => {
    const before = rows({ a: 200, b: 200 });
    const after = [...before, ...rows({ a: 50, b: 80 }, 'new')];
    const side = (plan: ReturnType<typeof planSplits>, i: number) =>
      plan.train.includes(i) ? 'train' : plan.validation.includes(i) ? 'validation' : 'test';
    const p1 = planSplits(before, { val: 0.25, test: 0 });
    const p2 = planSplits(after, { val: 0.25, test: 0 });
    before.forEach((_, i) => expect(side(p2, i)).toBe(side(p1, i)));
  });

  it('never puts the same content on both sides, even under two labels', () => {
    const data = rows({ roses: 300, tulips: 300 });
    const twins = data.slice(0, 300).map((r) => ({ ...r, label: 'tulips' }));
    const all = [...data, ...twins];
    const plan = planSplits(all, { val: 0.3, test: 0 });
    const trainShas = new Set(plan.train.map((i) => all[i].sha256));
    expect(plan.validation.filter((i) => trainShas.has(all[i].sha256))).toEqual([]);
  });

  it('uses folder splits when the rows carry them, carving validation out of train if missing', () => {
    const data: SplitRow[] = [
      ...rows({ a: 10, b: 10 }).map((r) => ({ ...r, split: 'train' as const })),
      ...rows({ a: 4, b: 4 }, 'v').map((r) => ({ ...r, split: 'validation' as const })),
    ];
    const plan = planSplits(data, { val: 0.2, test: 0 });
    expect(plan).toMatchObject({ source: 'folders' });
    expect(plan.train).toHaveLength(20);
    expect(plan.validation).toHaveLength(8);
    const onlyTrain = planSplits(data.slice(0, 20), { val: 0.5, test: 0 });
    expect(onlyTrain.validation.length).toBeGreaterThan(0);
    expect(onlyTrain.train.length + onlyTrain.validation.length).toBe(20);
  });
});
