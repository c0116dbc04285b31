/**
 * The audit stage: exact duplicates, near-duplicates and likely label errors of one set of
 * rows, each described by path, label and split. It takes plain rows (audit-source.ts reads
 * them from the cache) and never prints; the command module does.
 */
import type { Split } from '../cache/code-rows.ts';
import type { CodeSpec } from '../cache/code-spec.ts';
import { planSplits, type SplitFractions } from '../train-head/splits.ts';
import { UsageError } from '../util/errors.ts';
import type { AuditRows } from './audit-rows.ts';
import { findCalibration, type Calibration } from './calibration.ts';
import { confidentLearning, CONFIDENT_LEARNING_RULE } from './confident-learning.ts';
import { findExactDuplicates } from './exact-duplicates.ts';
import { assignFolds } from './folds.ts';
import { findNearDuplicates } from './near-duplicates.ts';
import { outOfFoldProbabilities, type OutOfFoldOptions } from './out-of-fold.ts';

export interface AuditOptions {
  /** Overrides the calibrated threshold; required for a cut without a calibration. */
  readonly threshold?: number;
  /** Neighbours searched per image. */
  readonly neighbours: number;
  readonly folds: number;
  readonly head: Omit<OutOfFoldOptions, 'onFold'>;
  /** For rows without split folders: the split train-head would give them (content hash). */
  readonly fractions: SplitFractions;
  readonly onStage?: (line: string) => void;
}

/** One listed image. */
export interface Member {
  readonly row: number;
  readonly path: string;
  readonly label: string | null;
  /** As listed (split folder or manifest), or as train-head's hash split assigns it. */
  readonly split: Split | null;
  /** The image file, when it can still be found. */
  readonly file: string | null;
  /** Its content when audited (a report shows the file only while it still has it). */
  readonly sha256: string;
}

export interface ExactFinding {
  readonly sha256: string;
  readonly members: readonly Member[];
  readonly labels: readonly string[];
  readonly splits: readonly Split[];
  readonly leak: boolean;
  readonly conflict: boolean;
}

export interface NearFinding {
  readonly similarity: number;
  /** The side in the earlier split first; each side lists every row of its content. */
  readonly a: readonly Member[];
  readonly b: readonly Member[];
  readonly leak: boolean;
  readonly labelsDiffer: boolean;
}

export interface LabelFinding {
  readonly member: Member;
  readonly given: string;
  readonly suggested: string;
  readonly selfConfidence: number;
  readonly suggestedProbability: number;
}

export interface NearSection {
  readonly threshold: number;
  /** Where the threshold came from, in words. */
  readonly thresholdSource: string;
  readonly calibration: Calibration | null;
  readonly neighbours: number;
  readonly pairs: readonly NearFinding[];
  readonly saturated: number;
  readonly seconds: number;
}

export interface AuditResult {
  readonly rows: number;
  /** Distinct contents (byte-identical files count once). */
  readonly contents: number;
  readonly classes: readonly string[];
  /** 'folders': as listed; 'hash': train-head's content-hash split with these fractions; 'none': no rows to split. */
  readonly splitSource: 'folders' | 'hash';
  readonly fractions: SplitFractions;
  readonly splitCounts: Readonly<Record<Split | 'none', number>>;
  readonly exact: readonly ExactFinding[];
  readonly near: NearSection | { readonly skipped: string };
  readonly labels: {
    readonly rule: string;
    readonly folds: number;
    readonly head: string;
    readonly thresholds: Readonly<Record<string, number | null>>;
    /** Share of rows whose out-of-fold argmax is their label. */
    readonly outOfFoldAccuracy: number;
    readonly confidentRows: number;
    readonly issues: readonly LabelFinding[];
    readonly seconds: number;
  };
}

export async function runAudit(rows: AuditRows, files: readonly (string | null)[], spec: CodeSpec, opts: AuditOptions): Promise<AuditResult> {
  if (rows.n === 0) throw new UsageError('no rows to audit');
  const log = opts.onStage ?? (() => undefined);
  const { splits, source } = effectiveSplits(rows, opts.fractions);
  const audited: AuditRows = { ...rows, splits };
  const member = (row: number): Member => ({ row, path: rows.paths[row], label: rows.labels[row], split: splits[row], file: files[row], sha256: rows.sha256[row] });

  const exact = findExactDuplicates(audited).map((g) => ({ sha256: g.sha256, members: g.rows.map(member), labels: g.labels, splits: g.splits, leak: g.leak, conflict: g.conflict }));
  log(`exact duplicates: ${exact.length} group(s)`);
  const { near, groupOfRow } = await nearSection(audited, spec, opts, member, log);
  const labels = await labelSection(rows, groupOfRow, opts, member, log);
  return {
    rows: rows.n,
    contents: new Set(rows.sha256).size,
    classes: labels.classes,
    splitSource: source,
    fractions: opts.fractions,
    splitCounts: countSplits(splits),
    exact,
    near,
    labels: labels.section,
  };
}

/** Near pairs, and a group per row for the folds: rows joined by copies share one (without near pairs, byte-identical rows still do). */
async function nearSection(rows: AuditRows, spec: CodeSpec, opts: AuditOptions, member: (row: number) => Member, log: (line: string) => void): Promise<{ near: AuditResult['near']; groupOfRow: Int32Array }> {
  const threshold = await nearThreshold(spec, opts.threshold);
  if ('skipped' in threshold) {
    const firstRowOf = new Map<string, number>();
    return { near: threshold, groupOfRow: Int32Array.from(rows.sha256, (sha, r) => firstRowOf.get(sha) ?? (firstRowOf.set(sha, r), r)) };
  }
  log(`near-duplicates: exact ${opts.neighbours}-NN over the codes, cosine ≥ ${threshold.value}…`);
  const found = await findNearDuplicates(rows, { threshold: threshold.value, k: opts.neighbours });
  return {
    groupOfRow: found.groupOfRow,
    near: {
      threshold: threshold.value,
      thresholdSource: threshold.source,
      calibration: threshold.calibration,
      neighbours: found.k,
      pairs: found.pairs.map((p) => ({ similarity: p.similarity, a: p.rowsA.map(member), b: p.rowsB.map(member), leak: p.leak, labelsDiffer: p.labelsDiffer })),
      saturated: found.saturated,
      seconds: found.seconds,
    },
  };
}

async function labelSection(
  rows: AuditRows,
  groupOfRow: Int32Array,
  opts: AuditOptions,
  member: (row: number) => Member,
  log: (line: string) => void,
): Promise<{ classes: string[]; section: AuditResult['labels'] }> {
  const classes = [...new Set(rows.labels.filter((l): l is string => l !== null))].sort();
  if (classes.length < 2) throw new UsageError(`the rows carry ${classes.length} label(s); finding label errors needs at least two classes`);
  const y = Int32Array.from(rows.labels, (l) => (l === null ? -1 : classes.indexOf(l)));
  const folds = assignFolds(rows, groupOfRow, opts.folds, opts.head.seed);
  log(`label errors: ${opts.folds} out-of-fold heads…`);
  const oof = await outOfFoldProbabilities(rows.codes, rows.dim, y, folds, classes.length, opts.folds, {
    ...opts.head,
    onFold: (f, k, s) => log(`  fold ${f + 1}/${k}: ${s.toFixed(1)} s`),
  });
  const cl = confidentLearning(oof.probabilities, y, classes.length);
  const h = opts.head;
  return {
    classes,
    section: {
      rule: CONFIDENT_LEARNING_RULE,
      folds: opts.folds,
      head: `${h.hidden.length === 0 ? 'logistic regression' : `Dense(${h.hidden.join(', ')}) head`} on standardised codes, ${h.epochs} epochs, Adam lr ${h.lr}, seed ${h.seed}; ${oof.trainer}`,
      thresholds: Object.fromEntries(classes.map((c, j) => [c, Number.isNaN(cl.thresholds[j]) ? null : cl.thresholds[j]])),
      outOfFoldAccuracy: accuracy(oof.probabilities, y, classes.length),
      confidentRows: cl.confidentRows,
      issues: cl.issues.map((i) => ({
        member: member(i.row),
        given: classes[i.given],
        suggested: classes[i.suggested],
        selfConfidence: i.selfConfidence,
        suggestedProbability: i.suggestedProbability,
      })),
      seconds: oof.seconds,
    },
  };
}

/**
 * Splits as listed when any row has one (train-head's rule: a train folder without a validation
 * folder has validation carved out by hash); otherwise the content-hash split train-head makes.
 */
export function effectiveSplits(rows: Pick<AuditRows, 'sha256' | 'labels' | 'splits'>, fractions: SplitFractions): { splits: (Split | null)[]; source: 'folders' | 'hash' } {
  const plan = planSplits(rows.sha256.map((sha256, r) => ({ sha256, label: rows.labels[r] ?? '', split: rows.splits[r] })), fractions);
  const splits: (Split | null)[] = rows.sha256.map(() => null);
  for (const s of ['train', 'validation', 'test'] as const) for (const r of plan[s]) splits[r] = s;
  return { splits, source: plan.source };
}

async function nearThreshold(spec: CodeSpec, override: number | undefined): Promise<{ value: number; source: string; calibration: Calibration | null } | { skipped: string }> {
  const cut = `${spec.backbone} ${spec.layer}${spec.pool ? `:${spec.pool}` : ''}`;
  const calibration = await findCalibration(spec);
  if (override !== undefined) {
    if (!(override > 0 && override <= 1)) throw new UsageError(`--threshold ${override}: use a cosine similarity in (0, 1]`);
    return { value: override, source: `--threshold${calibration ? ` (the calibrated value for ${cut} is ${calibration.threshold})` : ''}`, calibration };
  }
  if (!calibration) return { skipped: `no calibrated threshold for ${cut} with these weights; pass --threshold T (see docs/README-issue-16.md for how to calibrate one)` };
  return {
    value: calibration.threshold,
    source: `calibrated for ${cut} on ${calibration.measured}: recall ${(100 * calibration.recallAll).toFixed(1)}% on altered copies, ${calibration.distinct.falsePairs} of ${calibration.distinct.pairs} distinct-image pairs above (${calibration.command})`,
    calibration,
  };
}

function countSplits(splits: readonly (Split | null)[]): Record<Split | 'none', number> {
  const counts = { train: 0, validation: 0, test: 0, none: 0 };
  for (const s of splits) counts[s ?? 'none']++;
  return counts;
}

function accuracy(probabilities: Float32Array, y: Int32Array, classes: number): number {
  let right = 0;
  let scored = 0;
  for (let i = 0; i < y.length; i++) {
    if (y[i] < 0) continue;
    scored++;
    let top = 0;
    for (let j = 1; j < classes; j++) if (probabilities[i * classes + j] > probabilities[i * classes + top]) top = j;
    if (top === y[i]) right++;
  }
  return scored > 0 ? right / scored : 0;
}
