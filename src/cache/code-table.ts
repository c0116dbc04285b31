/**
 * A dataset's rows with their codes: the dataset's latest membership (membership.ts) joined,
 * on content hash, with one key's shards. This is how every stage reads "the dataset":
 * train-head, evaluate, sweep, fine-tune and cache export alike, so an image deleted, moved or
 * rewritten since an earlier extract is never read, and nothing else decides which rows exist.
 */
import type { Split } from './code-rows.ts';
import { contentId, rowCount } from './code-rows.ts';
import { extractHint } from './extract-hint.ts';
import type { FeatureCache } from './feature-cache.ts';
import { readMembership, type Member, type Membership } from './membership.ts';
import { UserError } from '../util/errors.ts';

/** Every row's facts (not its code), in path (then view) order. */
export interface RowIndex {
  readonly dataset: string;
  /** The folder row paths are relative to. */
  readonly root: string;
  readonly dim: number;
  /** null for an unlabeled image. */
  readonly labels: readonly (string | null)[];
  readonly sha256: readonly string[];
  readonly paths: readonly string[];
  readonly splits: readonly (Split | null)[];
  /** Augmented-view index per row (0 for the images themselves). */
  readonly views: readonly number[];
}

export interface CodeTable extends RowIndex {
  /** rows × dim, row-major. */
  readonly codes: Float32Array;
}

/** A key's codes lack some members of the dataset: a later extract listed images this key never saw. */
export class MissingCodesError extends UserError {}

/**
 * Which dataset of the key a reader means: the one asked for, or the only one extracted into
 * it; several need a choice.
 */
export async function resolveDataset(cache: FeatureCache, requested?: string): Promise<string> {
  const names = await cache.datasets();
  if (requested !== undefined) {
    if (!names.includes(requested)) throw new UserError(`${cache.dir} has no dataset '${requested}' (it has ${names.join(', ') || 'none: no extract into it has finished'})`);
    return requested;
  }
  if (names.length === 0) throw new UserError(`${cache.dir}: no extract into this key has finished yet (run \`bottleneck extract\` again; it resumes)`);
  if (names.length > 1) throw new UserError(`${cache.dir} holds ${names.length} datasets (${names.join(', ')}): choose one with --dataset`);
  return names[0];
}

/** Rows of the given members (images of `dataset`, paths relative to `root`), in the order given. */
export function indexOfMembers(members: readonly Member[], facts: { readonly dataset: string; readonly root: string; readonly dim: number }): RowIndex {
  return {
    ...facts,
    labels: members.map((x) => x.label),
    sha256: members.map((x) => x.sha256),
    paths: members.map((x) => x.path),
    splits: members.map((x) => x.split),
    views: members.map(() => 0),
  };
}

/** The dataset's rows, in path order, from its membership alone (no shard is read). */
export async function membershipIndex(cache: FeatureCache, dataset: string): Promise<RowIndex & { readonly membership: Membership }> {
  const membership = await readMembership(cache.root, dataset);
  return { ...indexOfMembers(membership.members, { dataset, root: membership.root, dim: cache.dim }), membership };
}

/**
 * Rows of a key of augmented views: each of the image rows `among` (indices into `images`)
 * once per view the key holds for it, view indices up to `maxView`, in path then view order.
 */
export async function viewsIndex(views: FeatureCache, images: RowIndex, among: readonly number[], maxView = Infinity): Promise<RowIndex> {
  const held = await views.contents();
  const count = Math.min(views.spec.augment?.views ?? 0, maxView);
  const rows: { r: number; v: number }[] = [];
  for (const r of [...among].sort((a, b) => (images.paths[a] < images.paths[b] ? -1 : 1))) {
    for (let v = 1; v <= count; v++) if (held.has(contentId(images.sha256[r], v))) rows.push({ r, v });
  }
  return {
    dataset: images.dataset,
    root: images.root,
    dim: views.dim,
    labels: rows.map(({ r }) => images.labels[r]),
    sha256: rows.map(({ r }) => images.sha256[r]),
    paths: rows.map(({ r }) => images.paths[r]),
    splits: rows.map(({ r }) => images.splits[r]),
    views: rows.map(({ v }) => v),
  };
}

/**
 * One pass over the key's shards, calling `visit(row, code)` for every row of `index` (each
 * row once, from the first shard holding its content). Returns the rows whose content the key
 * does not hold.
 */
export async function forEachCode(cache: FeatureCache, index: RowIndex, visit: (row: number, code: Float32Array) => void): Promise<number[]> {
  const rowsOf = new Map<string, number[]>();
  index.sha256.forEach((sha, r) => {
    const id = contentId(sha, index.views[r]);
    const list = rowsOf.get(id);
    if (list) list.push(r);
    else rowsOf.set(id, [r]);
  });
  const dim = cache.dim;
  for await (const { rows } of cache.shards()) {
    for (let i = 0; i < rowCount(rows); i++) {
      const id = contentId(rows.sha256[i], rows.view?.[i] ?? 0);
      const targets = rowsOf.get(id);
      if (!targets) continue;
      const code = rows.codes.subarray(i * dim, (i + 1) * dim);
      for (const r of targets) visit(r, code);
      rowsOf.delete(id);
    }
  }
  return [...rowsOf.values()].flat().sort((a, b) => a - b);
}

/** Throws MissingCodesError naming how many members lack codes and how to compute them. */
export function assertNoMissing(cache: FeatureCache, index: RowIndex & { readonly membership?: Membership }, missing: readonly number[]): void {
  if (missing.length === 0) return;
  const source = index.membership?.source;
  throw new MissingCodesError(
    `${cache.dir} lacks codes for ${missing.length} of ${index.paths.length} images of dataset '${index.dataset}' (e.g. ${index.paths[missing[0]]}), ` +
      `which its latest extract lists: ${source ? `run \`${extractHint(cache.spec, source)}\` (it computes only those)` : 'extract the dataset with this key’s settings'}`,
  );
}

/** The rows of `index` with their codes from `cache`, in memory; every row's code must be there. */
export async function readCodes(cache: FeatureCache, index: RowIndex & { readonly membership?: Membership }): Promise<CodeTable> {
  const codes = new Float32Array(index.paths.length * cache.dim);
  const missing = await forEachCode(cache, index, (r, code) => codes.set(code, r * cache.dim));
  assertNoMissing(cache, index, missing);
  const { membership: _membership, ...facts } = index;
  return { ...facts, codes };
}

/** Every row of a dataset (its latest membership) with its code, in memory. */
export async function readCodeTable(cache: FeatureCache, dataset: string): Promise<CodeTable> {
  return readCodes(cache, await membershipIndex(cache, dataset));
}

export interface LabelledCodes {
  /** n × dim, row-major. */
  readonly x: Float32Array;
  /** Class indices; -1 for a label outside `classes`. */
  readonly y: Int32Array;
  readonly n: number;
}

/** The given rows' codes and class indices, as one new matrix. */
export function gather(table: CodeTable, rows: readonly number[], classes: readonly string[]): LabelledCodes {
  const x = new Float32Array(rows.length * table.dim);
  const y = new Int32Array(rows.length);
  const index = new Map(classes.map((c, i) => [c, i]));
  rows.forEach((r, i) => {
    x.set(table.codes.subarray(r * table.dim, (r + 1) * table.dim), i * table.dim);
    const label = table.labels[r];
    y[i] = label === null ? -1 : (index.get(label) ?? -1);
  });
  return { x, y, n: rows.length };
}
