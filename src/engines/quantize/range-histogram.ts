/**
 * The calibration's range method: a histogram of every value a tensor takes over the sample,
 * and the range that keeps all but the outermost 0.001% on each side (the percentile method).
 * Bare min/max lets one outlier pixel stretch the scale of a whole tensor; a tighter percentile
 * clips values the next layers need. Measured on 120 flower photos (cosine of int8 to fp32 codes,
 * mean): googlenet 0.9635 at 99.9, 0.9946 at 99.99, 0.9986 at 99.999, 0.9988 at min/max;
 * Teachable Machine's MobileNetV2 0.9667, 0.9756, 0.9780, 0.9769.
 *
 * The histogram is symmetric about 0, [-limit, limit] with a power-of-two limit, and grows by
 * doubling: pairs of bins merge exactly, so the result does not depend on the order the batches
 * came in.
 */

export const PERCENTILE = 99.999;
const BINS = 4096; // even, so that doubling merges whole pairs

export interface HistogramState {
  readonly limit: number;
  readonly counts: readonly number[];
}

export class RangeHistogram {
  private limit = 0;
  private counts = new Float64Array(BINS);

  static from(state: HistogramState): RangeHistogram {
    const h = new RangeHistogram();
    h.limit = state.limit;
    h.counts = Float64Array.from(state.counts);
    return h;
  }

  add(values: Float32Array): void {
    let maxAbs = 0;
    for (let i = 0; i < values.length; i++) {
      const a = Math.abs(values[i]);
      if (a > maxAbs) maxAbs = a;
    }
    if (!Number.isFinite(maxAbs)) throw new Error('calibration: a tensor holds NaN or infinity');
    // Limits are powers of two, so that every order of batches lands on the same bins.
    if (this.limit === 0) this.limit = 2 ** Math.ceil(Math.log2(maxAbs > 0 ? maxAbs : 1));
    while (maxAbs > this.limit) this.double();
    const { counts, limit } = this;
    const perUnit = BINS / (2 * limit);
    for (let i = 0; i < values.length; i++) {
      const bin = Math.floor((values[i] + limit) * perUnit);
      counts[bin >= BINS ? BINS - 1 : bin]++;
    }
  }

  /** [low, high]: the 100−p and p percentiles, linear within a bin. */
  range(percentile = PERCENTILE): [number, number] {
    const total = this.counts.reduce((a, b) => a + b, 0);
    if (total === 0) return [0, 0];
    const tail = total * (1 - percentile / 100);
    return [this.valueAt(tail), this.valueAt(total - tail)];
  }

  state(): HistogramState {
    return { limit: this.limit, counts: [...this.counts] };
  }

  /** The value below which `count` of the values lie. */
  private valueAt(count: number): number {
    const width = (2 * this.limit) / BINS;
    let seen = 0;
    for (let b = 0; b < BINS; b++) {
      const c = this.counts[b];
      if (c > 0 && seen + c >= count) return -this.limit + (b + (count - seen) / c) * width;
      seen += c;
    }
    return this.limit;
  }

  /** Twice the limit: bin pairs merge into the middle half, the outer halves start empty. */
  private double(): void {
    const merged = new Float64Array(BINS);
    for (let b = 0; b < BINS; b += 2) merged[BINS / 4 + b / 2] = this.counts[b] + this.counts[b + 1];
    this.counts = merged;
    this.limit *= 2;
  }
}
