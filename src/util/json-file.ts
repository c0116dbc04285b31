/**
 * JSON the tool reads back from disk (spec.json, head.json, shard lists, metadata) is checked
 * against a schema before use: a hand-edited, truncated or foreign file is a one-line error
 * naming the file and the first field that is wrong, never a crash deeper in.
 */
import type { z } from 'zod';
import { READ_LIMITS, readTextCapped } from './bounded-read.ts';
import { UserError } from './errors.ts';

/** A file the tool wrote (or expects) that does not hold what it should. */
export class InvalidFileError extends UserError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/** Parses and checks JSON text; `file` names it in errors. */
export function parseJson<S extends z.ZodType>(text: string, schema: S, file: string, what: string): z.infer<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidFileError(file, `not valid JSON (expected ${what})`);
  }
  return checkJson(value, schema, file, what);
}

export function checkJson<S extends z.ZodType>(value: unknown, schema: S, file: string, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
  throw new InvalidFileError(file, `not ${what}${where}: ${issue.message}`);
}

export async function readJsonFile<S extends z.ZodType>(file: string, schema: S, what: string): Promise<z.infer<S>> {
  return parseJson(await readTextCapped(file, READ_LIMITS.json), schema, file, what);
}
