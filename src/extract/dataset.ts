/**
 * What to extract: a folder of class subfolders (Keras' flow_from_directory layout, with
 * optional train/validation/test folders above them) or a CSV/JSONL manifest.
 */
import { createReadStream, existsSync, type Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { parse as parseCsv } from 'csv-parse/sync';
import type { Split } from '../cache/code-rows.ts';
import { UsageError } from '../util/errors.ts';
import { IMAGE_EXTENSIONS } from './decode-image.ts';

export type { Split };

export interface DatasetItem {
  /** Absolute path, for reading. */
  readonly file: string;
  /** Relative to the data root, with '/' separators: what the cache records. */
  readonly path: string;
  readonly label: string;
  readonly split: Split | null;
}

export interface Dataset {
  /** The folder's or manifest's name, recorded on every cached row. */
  readonly name: string;
  readonly root: string;
  readonly items: readonly DatasetItem[];
  readonly classes: readonly string[];
  /** Entries that looked like images but could not even be listed (broken links, loops). */
  readonly unlisted: readonly { readonly path: string; readonly reason: string }[];
}

const SPLIT_NAMES: Readonly<Record<string, Split>> = { train: 'train', validation: 'validation', val: 'validation', test: 'test' };

export function parseSplit(value: string | undefined | null, where: string): Split | null {
  if (value === undefined || value === null || value === '') return null;
  const split = SPLIT_NAMES[value.toLowerCase()];
  if (!split) throw new UsageError(`${where}: unknown split '${value}' (use train, validation/val or test)`);
  return split;
}

/** A folder or a manifest (.csv, .jsonl), checked for the mistakes that make extraction pointless. */
export async function loadDataset(source: string): Promise<Dataset> {
  if (!existsSync(source)) throw new UsageError(`${source}: no such folder or manifest`);
  const info = await stat(source);
  const dataset = info.isDirectory() ? await scanFolder(source) : await readManifest(source);
  if (dataset.items.length === 0) {
    throw new UsageError(`${source}: no images found (looked for ${[...IMAGE_EXTENSIONS].join(' ')} in class subfolders)`);
  }
  if (dataset.classes.length < 2) {
    throw new UsageError(`${source}: only one class (${dataset.classes[0]}); a classifier needs at least two class folders`);
  }
  return dataset;
}

export async function scanFolder(root: string): Promise<Dataset> {
  const unlisted: { path: string; reason: string }[] = [];
  const top = (await listEntries(root, unlisted, root, false)).filter((e) => e.dirent.isDirectory()).map((e) => e.name);
  const splitDirs = top.filter((name) => SPLIT_NAMES[name.toLowerCase()]);
  // With split folders, class folders sit one level down; a mix of both is a layout error.
  const layout: { dir: string; split: Split | null }[] =
    splitDirs.length > 0 ? splitDirs.map((d) => ({ dir: d, split: SPLIT_NAMES[d.toLowerCase()] })) : [{ dir: '', split: null }];
  if (splitDirs.length > 0 && splitDirs.length !== top.length) {
    const others = top.filter((t) => !splitDirs.includes(t));
    throw new UsageError(`${root}: mixes split folders (${splitDirs.join(', ')}) with other folders (${others.join(', ')})`);
  }

  const items: DatasetItem[] = [];
  for (const { dir, split } of layout) {
    const classDirs = dir === '' ? top : (await listEntries(path.join(root, dir), unlisted, root, false)).filter((e) => e.dirent.isDirectory()).map((e) => e.name);
    for (const label of classDirs) {
      for await (const entry of walkImages(path.join(root, dir, label), unlisted, root)) {
        items.push({ file: entry, path: toPosix(path.relative(root, entry)), label, split });
      }
    }
  }
  items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { name: path.basename(path.resolve(root)), root: path.resolve(root), items, classes: [...new Set(items.map((i) => i.label))].sort(), unlisted };
}

/** Image files under a class folder, recursively; symlinks are followed once, loops reported. */
async function* walkImages(dir: string, unlisted: { path: string; reason: string }[], root: string): AsyncGenerator<string> {
  for (const { name, dirent: entry } of await listEntries(dir, unlisted, root)) {
    const full = path.join(dir, name);
    const isImageName = IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());
    if (entry.isDirectory()) {
      yield* walkImages(full, unlisted, root);
    } else if (entry.isSymbolicLink()) {
      try {
        const target = await stat(full);
        if (target.isFile() && isImageName) yield full;
      } catch (err) {
        if (isImageName) unlisted.push({ path: toPosix(path.relative(root, full)), reason: (err as NodeJS.ErrnoException).code ?? String(err) });
      }
    } else if (isImageName) {
      // Anything else with an image name (a FIFO, a socket) fails at decode with its reason.
      yield full;
    }
  }
}

// ignoreBOM keeps a leading U+FEFF in the name instead of stripping it.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A folder's entries, sorted by name. Names that are not valid UTF-8 (Latin-1 or Shift-JIS
 * names from old archives) are reported as unlisted: a JS string cannot spell them, so the
 * file could not be opened, and as a string with U+FFFD it would read as missing or, for a
 * folder, fail the whole scan with ENOENT. Files are reported where they would be listed
 * (`files`), and only with an image extension, like every other unlisted entry.
 */
async function listEntries(dir: string, unlisted: { path: string; reason: string }[], root: string, files = true): Promise<{ name: string; dirent: Dirent<Buffer> }[]> {
  const entries: { name: string; dirent: Dirent<Buffer> }[] = [];
  for (const dirent of await readdir(dir, { withFileTypes: true, encoding: 'buffer' })) {
    let name: string;
    try {
      name = strictUtf8.decode(dirent.name);
    } catch {
      // Non-ASCII bytes as \xNN: what the user needs to find and rename the entry.
      const shown = [...dirent.name].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
      if (dirent.isDirectory() || (files && IMAGE_EXTENSIONS.has(path.extname(shown).toLowerCase()))) {
        const what = dirent.isDirectory() ? 'folder' : 'file';
        unlisted.push({ path: toPosix(path.relative(root, path.join(dir, shown))), reason: `the ${what} name is not valid UTF-8, so it cannot be read; rename it` });
      }
      continue;
    }
    entries.push({ name, dirent });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

interface ManifestRow {
  path?: unknown;
  label?: unknown;
  split?: unknown;
}

/** `path,label[,split]` as CSV with a header, or JSON lines; paths are relative to the manifest. */
export async function readManifest(file: string): Promise<Dataset> {
  const root = path.dirname(path.resolve(file));
  const rows: { row: ManifestRow; line: number }[] = [];
  if (/\.jsonl?$/i.test(file)) {
    const lines = readline.createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    let line = 0;
    for await (const text of lines) {
      line++;
      if (!text.trim()) continue;
      try {
        rows.push({ row: JSON.parse(text) as ManifestRow, line });
      } catch {
        throw new UsageError(`${file}:${line}: not valid JSON`);
      }
    }
  } else if (/\.csv$/i.test(file)) {
    const records = parseCsv(await readFile(file), { columns: true, skip_empty_lines: true, trim: true }) as ManifestRow[];
    records.forEach((row, i) => rows.push({ row, line: i + 2 }));
    if (records.length && (!('path' in records[0]) || !('label' in records[0]))) {
      throw new UsageError(`${file}: the CSV header must name the columns path,label[,split]`);
    }
  } else {
    throw new UsageError(`${file}: a manifest must be .csv or .jsonl`);
  }
  const items = rows.map(({ row, line }) => {
    const where = `${file}:${line}`;
    if (typeof row.path !== 'string' || !row.path) throw new UsageError(`${where}: missing 'path'`);
    if (row.label === undefined || row.label === null || row.label === '') throw new UsageError(`${where}: missing 'label'`);
    const abs = path.resolve(root, row.path);
    return {
      file: abs,
      path: toPosix(path.relative(root, abs)),
      label: String(row.label),
      split: parseSplit(row.split === undefined ? undefined : String(row.split), where),
    };
  });
  const name = path.basename(file).replace(/\.(csv|jsonl?)$/i, '');
  return { name, root, items, classes: [...new Set(items.map((i) => i.label))].sort(), unlisted: [] };
}

function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}
