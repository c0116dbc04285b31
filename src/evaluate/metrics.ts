/**
 * Classification metrics from predicted probabilities, as scikit-learn's classification_report,
 * confusion_matrix and log_loss define them, so numbers can be checked against it.
 */

export interface ClassMetrics {
  readonly label: string;
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  /** True rows of this class. */
  readonly support: number;
}

export interface Averages {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
}

export interface Mistake {
  readonly path: string;
  /** Where the image can be read, for thumbnails; null when it is gone. */
  readonly file: string | null;
  /** The content its code was computed from. */
  readonly sha256: string;
  readonly label: string;
  readonly predicted: string;
  /** Probability of the predicted class. */
  readonly probability: number;
  /** Probability the head gave the true class; mistakes are listed by it, lowest (worst) first. */
  readonly trueProbability: number;
}

export interface ScoredRow {
  readonly path: string;
  readonly file: string | null;
  readonly label: string;
  /** The content extract accepted; a report shows the file only while it still has it. */
  readonly sha256: string;
}

export interface Metrics {
  /** Rows scored: those whose label the head knows. */
  readonly n: number;
  readonly accuracy: number;
  /** k → accuracy, for k = 3 and 5 where there are more than k classes (empty for ≤ 2 classes). */
  readonly topK: Readonly<Record<number, number>>;
  readonly logLoss: number;
  readonly classes: readonly ClassMetrics[];
  readonly macro: Averages;
  readonly weighted: Averages;
  /** confusion[true][predicted], in the head's class order. */
  readonly confusion: readonly (readonly number[])[];
  readonly mistakes: readonly Mistake[];
  /** Labels in the data that the head was never trained on: count each; these rows are not scored. */
  readonly unseenLabels: Readonly<Record<string, number>>;
}

/** scikit-learn clips probabilities to [eps, 1 - eps] in log_loss; float32's eps here. */
const LOG_EPS = 1e-7;

/**
 * `probs` holds one row of `classes.length` probabilities per entry of `rows`. Rows whose label
 * is not one of `classes` are counted in unseenLabels and left out of every other number.
 */
export function computeMetrics(classes: readonly string[], rows: readonly ScoredRow[], probs: Float32Array): Metrics {
  const c = classes.length;
  if (probs.length !== rows.length * c) throw new Error(`computeMetrics: expected ${rows.length}×${c} probabilities, got ${probs.length}`);
  const index = new Map(classes.map((name, i) => [name, i]));
  const confusion = classes.map(() => new Array<number>(c).fill(0));
  const unseen: Record<string, number> = {};
  const ks = [3, 5].filter((k) => c > k);
  const topHits = new Map(ks.map((k) => [k, 0]));
  const mistakes: Mistake[] = [];
  let n = 0;
  let correct = 0;
  let logLoss = 0;

  rows.forEach((row, r) => {
    const truth = index.get(row.label);
    if (truth === undefined) {
      unseen[row.label] = (unseen[row.label] ?? 0) + 1;
      return;
    }
    const p = probs.subarray(r * c, (r + 1) * c);
    let predicted = 0;
    for (let j = 1; j < c; j++) if (p[j] > p[predicted]) predicted = j;
    n++;
    confusion[truth][predicted]++;
    // Renormalised after clipping, as scikit-learn does.
    let total = 0;
    for (let j = 0; j < c; j++) total += clip(p[j]);
    logLoss -= Math.log(clip(p[truth]) / total);
    if (predicted === truth) correct++;
    else {
      mistakes.push({ path: row.path, file: row.file, sha256: row.sha256, label: row.label, predicted: classes[predicted], probability: p[predicted], trueProbability: p[truth] });
    }
    // Rank of the true class: how many classes score strictly higher.
    let higher = 0;
    for (let j = 0; j < c; j++) if (p[j] > p[truth]) higher++;
    for (const k of ks) if (higher < k) topHits.set(k, topHits.get(k)! + 1);
  });

  const perClass: ClassMetrics[] = classes.map((label, i) => {
    const tp = confusion[i][i];
    const support = confusion[i].reduce((a, b) => a + b, 0);
    const predictedAs = confusion.reduce((a, row) => a + row[i], 0);
    const precision = predictedAs > 0 ? tp / predictedAs : 0;
    const recall = support > 0 ? tp / support : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    return { label, precision, recall, f1, support };
  });
  const average = (weight: (m: ClassMetrics) => number): Averages => {
    const total = perClass.reduce((a, m) => a + weight(m), 0);
    const mean = (pick: (m: ClassMetrics) => number) => (total > 0 ? perClass.reduce((a, m) => a + weight(m) * pick(m), 0) / total : 0);
    return { precision: mean((m) => m.precision), recall: mean((m) => m.recall), f1: mean((m) => m.f1) };
  };

  mistakes.sort((a, b) => a.trueProbability - b.trueProbability || (a.path < b.path ? -1 : 1));
  return {
    n,
    accuracy: n > 0 ? correct / n : 0,
    topK: Object.fromEntries(ks.map((k) => [k, n > 0 ? topHits.get(k)! / n : 0])),
    logLoss: n > 0 ? logLoss / n : 0,
    classes: perClass,
    macro: average(() => 1),
    weighted: average((m) => m.support),
    confusion,
    mistakes,
    unseenLabels: unseen,
  };
}

function clip(p: number): number {
  return Math.min(Math.max(p, LOG_EPS), 1 - LOG_EPS);
}
