/**
 * The images the latest run could not use, with the reason: `errors.arrow` in the key's
 * folder. Rewritten by every run, since a fixed file is retried and then leaves the table.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { tableFromArrays, tableFromIPC, tableToIPC } from 'apache-arrow';
import { writeFileAtomic } from '../util/atomic-file.ts';

export interface FailedImage {
  readonly path: string;
  readonly label: string;
  readonly split: string | null;
  /** Short category, e.g. 'corrupt', 'not-an-image', 'too-large', 'unreadable'. */
  readonly reason: string;
  readonly message: string;
}

export async function writeErrorsTable(dir: string, failures: readonly FailedImage[]): Promise<void> {
  const table = tableFromArrays({
    path: failures.map((f) => f.path),
    label: failures.map((f) => f.label),
    split: failures.map((f) => f.split),
    reason: failures.map((f) => f.reason),
    message: failures.map((f) => f.message),
  });
  await writeFileAtomic(path.join(dir, 'errors.arrow'), tableToIPC(table, 'file'));
}

export async function readErrorsTable(dir: string): Promise<FailedImage[]> {
  const file = path.join(dir, 'errors.arrow');
  if (!existsSync(file)) return [];
  return tableFromIPC(await readFile(file))
    .toArray()
    .map((row: Record<string, unknown>) => ({
      path: String(row.path),
      label: String(row.label),
      split: row.split === null ? null : String(row.split),
      reason: String(row.reason),
      message: String(row.message),
    }));
}
