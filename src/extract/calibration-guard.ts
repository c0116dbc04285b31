/**
 * int8 keys remember which calibration made their codes (`calibration-id.json` in the key's
 * folder), so that a calibration deleted or replaced since can never mix two quantised models'
 * codes in one key: extract refuses, naming the key to delete.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { calibrationFile, readCalibration } from '../engines/quantize/calibration.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { UsageError } from '../util/errors.ts';
import { readJsonFile } from '../util/json-file.ts';

const ID_FILE = 'calibration-id.json';
const idSchema = z.object({ calibration: z.string().min(1) });

/** Refuses a key whose codes came from another calibration than the one stored now. */
export async function checkKeyCalibrations(keyDirs: readonly string[], cacheRoot: string, calibrationKey: string): Promise<void> {
  const current = await readCalibration(cacheRoot, calibrationKey);
  for (const dir of keyDirs) {
    const file = path.join(dir, ID_FILE);
    if (!existsSync(file)) continue;
    const made = (await readJsonFile(file, idSchema, 'a calibration id')).calibration;
    if (current?.id === made) continue;
    const now = current ? `holds calibration ${current.id} now` : 'is gone';
    throw new UsageError(`${dir}: its int8 codes were made with calibration ${made}, but ${calibrationFile(cacheRoot, calibrationKey)} ${now}; delete ${dir} to extract it again`);
  }
}

/** Records the stored calibration in every key that lacks the record (after a run wrote codes). */
export async function recordKeyCalibrations(keyDirs: readonly string[], cacheRoot: string, calibrationKey: string): Promise<void> {
  const current = await readCalibration(cacheRoot, calibrationKey);
  if (!current) return;
  for (const dir of keyDirs) {
    const file = path.join(dir, ID_FILE);
    if (!existsSync(file)) await writeFileAtomic(file, `${JSON.stringify({ calibration: current.id })}\n`);
  }
}
