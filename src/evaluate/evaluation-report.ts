/** Everything `evaluate` found, in one value that the terminal table, --json and --report render. */
import type { CodeSpec } from '../cache/code-spec.ts';
import type { EpochStats } from '../train-head/fit.ts';
import type { Metrics } from './metrics.ts';

export interface EvaluationReport {
  /** The head folder evaluated. */
  readonly head: string;
  readonly cacheKey: string;
  readonly codeSpec: CodeSpec;
  /** What was scored, for humans: 'test split', 'validation split (no test split)', or the --data path. */
  readonly source: string;
  /** The head's classes, in output order (the confusion matrix's order). */
  readonly classes: readonly string[];
  readonly metrics: Metrics;
  /** The head's training history (history.json), for the curves. */
  readonly history: readonly EpochStats[];
  /** Wall-clock seconds of the evaluation. */
  readonly seconds: number;
}
