/**
 * The images the latest run could not use, with the reason: `errors.arrow` in the key's
 * folder (`errors-<writer>.arrow` for each process of a sharded run, `--shard K/N`).
 * Rewritten by every run, since a fixed file is retried and then leaves the table.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { tableFromArrays, tableFromIPC, tableToIPC } from 'apache-arrow';
import { writeFileAtomic } from '../util/atomic-file.ts';

export interface FailedImage {
  readonly path: string;
  readonly label: string | null;
  readonly split: string | null;
  /** Short category, e.g. 'corrupt', 'not-an-image', 'too-large', 'unreadable'. */
  readonly reason: string;
  readonly message: string;
}

/** The table's file name for a writer: each process of a sharded run keeps its own. */
export function errorsTableName(writerId = 'w'): string {
  return writerId === 'w' ? 'errors.arrow' : `errors-${writerId}.arrow`;
}

export async function writeErrorsTable(dir: string, failures: readonly FailedImage[], writerId?: string): Promise<void> {
  const table = tableFromArrays({
    path: failures.map((f) => f.path),
    label: failures.map((f) => f.label),
    split: failures.map((f) => f.split),
    reason: failures.map((f) => f.reason),
    message: failures.map((f) => f.message),
  });
  await writeFileAtomic(path.join(dir, errorsTableName(writerId)), tableToIPC(table, 'file'));
}

/** Every writer's failures (one table, or one per process of a sharded run). */
export async function readErrorsTable(dir: string): Promise<FailedImage[]> {
  if (!existsSync(dir)) return [];
  const files = (await readdir(dir)).filter((f) => /^errors(-[\w.-]+)?\.arrow$/.test(f)).sort();
  const tables = await Promise.all(files.map(async (f) => tableFromIPC(await readFile(path.join(dir, f))).toArray()));
  return tables
    .flat()
    .map((row: Record<string, unknown>) => ({
      path: String(row.path),
      label: row.label === null ? null : String(row.label),
      split: row.split === null ? null : String(row.split),
      reason: String(row.reason),
      message: String(row.message),
    }));
}
