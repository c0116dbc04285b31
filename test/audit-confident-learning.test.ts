/** Confident learning against cleanlab's own output (test/reference/cleanlab_confident_learning.py), and the fold rule. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { confidentLearning } from '../src/audit/confident-learning.ts';
import { assignFolds } from '../src/audit/folds.ts';

interface Case {
  readonly seed: number;
  readonly classes: number;
  readonly labels: number[];
  readonly probabilities: number[];
  readonly thresholds: number[];
  readonly issues: number[];
}
const reference = JSON.parse(readFileSync(path.join(import.meta.dirname, 'reference', 'cleanlab-confident-learning.json'), 'utf8')) as { cleanlab: string; cases: Case[] };

describe(`confidentLearning matches cleanlab ${reference.cleanlab}`, () => {
  for (const c of reference.cases) {
    it(`case ${c.seed}: ${c.labels.length} rows, ${c.classes} classes, ${c.issues.length} issues`, () => {
      const result = confidentLearning(Float32Array.from(c.probabilities), Int32Array.from(c.labels), c.classes);
      c.thresholds.forEach((t, j) => {
        // cleanlab gives a class no row carries the threshold 2 (nothing reaches it); NaN here.
        if (t === 2) expect(result.thresholds[j]).toBeNaN();
        else expect(result.thresholds[j]).toBeCloseTo(t, 6);
      });
      expect(result.issues.map((i) => i.row)).toEqual(c.issues);
      for (const issue of result.issues) {
        expect(issue.given).toBe(c.labels[issue.row]);
        expect(issue.suggested).not.toBe(issue.given);
        expect(issue.selfConfidence).toBeCloseTo(c.probabilities[issue.row * c.classes + issue.given], 6);
      }
    });
  }

  it('flags nothing when every row is confidently its own label', () => {
    const probs = Float32Array.of(0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.3, 0.7);
    const result = confidentLearning(probs, Int32Array.of(0, 0, 1, 1), 2);
    expect(result.issues).toEqual([]);
    expect([...result.thresholds]).toEqual([0.85, 0.8].map((v) => expect.closeTo(v, 6)));
  });

  it('leaves rows marked -1 out of thresholds and issues', () => {
    const probs = Float32Array.of(0.9, 0.1, 0.1, 0.9, 0.0, 1.0);
    const result = confidentLearning(probs, Int32Array.of(0, 1, -1), 2);
    expect(result.issues).toEqual([]);
    expect(result.thresholds[1]).toBeCloseTo(0.9, 6);
  });
});

describe('assignFolds', () => {
  const sha = (i: number) => i.toString(16).padStart(64, '0');
  const n = 200;
  const rows = { sha256: Array.from({ length: n }, (_, i) => sha(i)), labels: Array.from({ length: n }, (_, i) => (i % 4 === 0 ? 'a' : 'b')) };

  it('keeps each class balanced over the folds and every group in one fold', () => {
    // Rows 2i and 2i+1 are copies of each other (one group).
    const groups = Int32Array.from({ length: n }, (_, i) => Math.floor(i / 2) * 2);
    const folds = assignFolds(rows, groups, 5, 0);
    for (let i = 0; i < n; i += 2) expect(folds[i + 1]).toBe(folds[i]);
    for (const label of ['a', 'b']) {
      const counts = [0, 0, 0, 0, 0];
      rows.labels.forEach((l, r) => {
        if (l === label) counts[folds[r]]++;
      });
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(2);
    }
  });

  it('depends on the seed and the content, not on the row order', () => {
    const groups = Int32Array.from({ length: n }, (_, i) => i);
    const a = assignFolds(rows, groups, 5, 0);
    expect([...assignFolds(rows, groups, 5, 0)]).toEqual([...a]);
    expect([...assignFolds(rows, groups, 5, 1)]).not.toEqual([...a]);
    const reversed = { sha256: [...rows.sha256].reverse(), labels: [...rows.labels].reverse() };
    const b = assignFolds(reversed, Int32Array.from({ length: n }, (_, i) => i), 5, 0);
    expect([...b].reverse()).toEqual([...a]);
  });

  it('gives unlabelled rows no fold', () => {
    const folds = assignFolds({ sha256: [sha(1), sha(2)], labels: ['a', null] }, Int32Array.of(0, 1), 5, 0);
    expect(folds[1]).toBe(-1);
  });
});
