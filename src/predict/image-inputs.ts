/**
 * What users type after `predict`: image files, folders (searched recursively for images) and
 * globs (quoted, so the shell leaves them to us; unquoted ones arrive already expanded).
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { IMAGE_EXTENSIONS } from '../extract/decode-image.ts';
import { UsageError } from '../util/errors.ts';

const isImageName = (file: string) => IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase());

export async function expandImageInputs(inputs: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    if (existsSync(input)) {
      if (!statSync(input).isDirectory()) {
        files.push(input);
        continue;
      }
      const found = (await glob('**/*', { cwd: input, onlyFiles: true, followSymbolicLinks: false })).filter(isImageName).sort();
      if (found.length === 0) throw new UsageError(`${input}: no images in this folder (looked for ${[...IMAGE_EXTENSIONS].join(' ')})`);
      files.push(...found.map((f) => path.join(input, f)));
    } else if (isDynamicPattern(input)) {
      const found = (await glob(input, { onlyFiles: true })).filter(isImageName).sort();
      if (found.length === 0) throw new UsageError(`${input}: the pattern matches no images`);
      files.push(...found);
    } else {
      throw new UsageError(`${input}: no such file or folder`);
    }
  }
  return files;
}
