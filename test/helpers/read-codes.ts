/** A dataset's rows with their codes, as every stage reads them (its latest membership joined with a key). */
import { readCodeTable, resolveDataset, type CodeTable } from '../../src/cache/code-table.ts';
import { FeatureCache } from '../../src/cache/feature-cache.ts';

export async function readRows(cacheRoot: string, key: string, dataset?: string): Promise<CodeTable> {
  const cache = await FeatureCache.open(cacheRoot, key);
  return readCodeTable(cache, await resolveDataset(cache, dataset));
}

/** Row indices of one split (null: rows without one). */
export function rowsOfSplit(table: CodeTable, split: CodeTable['splits'][number]): number[] {
  return [...table.paths.keys()].filter((i) => table.splits[i] === split);
}

/** One row's code, by path. */
export function codeAt(table: CodeTable, path: string): number[] {
  const i = table.paths.indexOf(path);
  if (i < 0) throw new Error(`no row ${path}`);
  return [...table.codes.subarray(i * table.dim, (i + 1) * table.dim)];
}
