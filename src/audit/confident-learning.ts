/**
 * Likely label errors from out-of-fold probabilities, by confident learning (Northcutt, Jiang
 * and Chuang, 2021) as cleanlab computes it with filter_by='confident_learning':
 *
 * - each class j gets a threshold t_j, the mean out-of-fold probability of j over the rows
 *   labelled j (the class's mean self-confidence);
 * - a row is confidently of class j when p(j) ≥ t_j; with several such classes, the one of
 *   highest probability overall (cleanlab takes the row's argmax then); with none, it is not
 *   counted;
 * - a row whose confident class is not its given label is a label issue (an off-diagonal entry
 *   of the confident joint), unless its given label is still its most probable class (within
 *   1e-6; cleanlab's _reduce_issues);
 * - issues are ranked by self-confidence, the probability of the given label, lowest first
 *   (cleanlab's rank_by='self_confidence').
 *
 * test/reference/cleanlab_confident_learning.py checks this against cleanlab itself.
 */

export interface LabelIssue {
  readonly row: number;
  /** Class indices. */
  readonly given: number;
  readonly suggested: number;
  /** Out-of-fold probability of the given label. */
  readonly selfConfidence: number;
  /** Out-of-fold probability of the suggested class. */
  readonly suggestedProbability: number;
}

export interface ConfidentLearning {
  /** t_j per class (NaN for a class no row is labelled with: nothing can be confidently of it). */
  readonly thresholds: Float64Array;
  /** Ranked, most likely wrong first. */
  readonly issues: readonly LabelIssue[];
  /** Rows counted in the confident joint (some class reached its threshold). */
  readonly confidentRows: number;
}

/** The rule, in the words the terminal summary and the report print. */
export const CONFIDENT_LEARNING_RULE =
  "confident learning (cleanlab's filter_by='confident_learning'): class j's threshold t_j is the mean out-of-fold p(j) over the rows labelled j; " +
  'a row is flagged when the class it is confidently in (p(j) ≥ t_j; of several, its most probable class) is not its label and its label is not its most probable class; ranked by p(given label), lowest first';

/**
 * `probabilities` is n × classes, row-major; `labels` a class index per row, or -1 for rows
 * that are not judged (unlabelled, or outside every fold).
 */
export function confidentLearning(probabilities: Float32Array, labels: Int32Array, classes: number): ConfidentLearning {
  const n = labels.length;
  const sum = new Float64Array(classes);
  const count = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    if (labels[i] < 0) continue;
    sum[labels[i]] += probabilities[i * classes + labels[i]];
    count[labels[i]]++;
  }
  // cleanlab clips thresholds at 2e-6 (CONFIDENT_THRESHOLDS_LOWER_BOUND).
  const thresholds = sum.map((s, j) => (count[j] > 0 ? Math.max(s / count[j], 2e-6) : NaN));
  const issues: LabelIssue[] = [];
  let confidentRows = 0;
  for (let i = 0; i < n; i++) {
    if (labels[i] < 0) continue;
    const p = probabilities.subarray(i * classes, (i + 1) * classes);
    let confident = -1;
    let confidentCount = 0;
    let argmax = 0;
    for (let j = 0; j < classes; j++) {
      if (p[j] > p[argmax]) argmax = j;
      // cleanlab compares with t_j - 1e-6, so a class whose rows all agree still counts.
      if (p[j] >= thresholds[j] - 1e-6) {
        confidentCount++;
        if (confident < 0) confident = j;
      }
    }
    if (confidentCount === 0) continue;
    confidentRows++;
    const guess = confidentCount > 1 ? argmax : confident;
    let givenIsTop = true;
    for (let j = 0; j < classes; j++) if (j !== labels[i] && p[j] > p[labels[i]] + 1e-6) givenIsTop = false;
    if (guess !== labels[i] && !givenIsTop) issues.push({ row: i, given: labels[i], suggested: guess, selfConfidence: p[labels[i]], suggestedProbability: p[guess] });
  }
  issues.sort((a, b) => a.selfConfidence - b.selfConfidence || a.row - b.row);
  return { thresholds, issues, confidentRows };
}
