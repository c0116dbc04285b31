/**
 * What to extract: a folder of class subfolders (Keras' flow_from_directory layout, with
 * optional train/validation/test folders above them) or a CSV/JSONL manifest.
 */
import { existsSync, type Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { CsvError, parse as parseCsv } from 'csv-parse/sync';
import type { Split } from '../cache/code-rows.ts';
import type { DatasetSource } from '../cache/membership.ts';
import { readTextCapped } from '../util/bounded-read.ts';
import { asFileSystemError, UsageError } from '../util/errors.ts';
import { IMAGE_EXTENSIONS } from './decode-image.ts';

export type { Split };

export interface DatasetItem {
  /** Absolute path, for reading. */
  readonly file: string;
  /** Relative to the data root, with '/' separators: what the cache records. */
  readonly path: string;
  /** null for an unlabeled image: one outside any class folder, or a manifest row without a label. */
  readonly label: string | null;
  readonly split: Split | null;
}

/** A scanned folder or manifest: its items, and (as a DatasetSource) where they came from. */
export interface Dataset extends DatasetSource {
  readonly items: readonly DatasetItem[];
  readonly classes: readonly string[];
  /** Entries that looked like images but could not even be listed (broken links, loops). */
  readonly unlisted: readonly { readonly path: string; readonly reason: string }[];
  /** Things the user should know, such as manifest rows listed twice (kept once). */
  readonly warnings: readonly string[];
}

/** The largest manifest read (about five million rows); a bigger one is refused, not read without end. */
const MAX_MANIFEST_BYTES = 512 << 20;
/** No real manifest row is longer; a longer one is a binary or runaway file. */
const MAX_ROW_CHARS = 64 << 10;

const SPLIT_NAMES: ReadonlyMap<string, Split> = new Map([
  ['train', 'train'],
  ['validation', 'validation'],
  ['val', 'validation'],
  ['test', 'test'],
]);

export function parseSplit(value: string | undefined | null, where: string): Split | null {
  if (value === undefined || value === null || value === '') return null;
  const split = SPLIT_NAMES.get(value.toLowerCase());
  if (!split) throw new UsageError(`${where}: unknown split '${value}' (use train, validation/val or test)`);
  return split;
}

/** A folder or a manifest (.csv, .jsonl), checked for the mistakes that make extraction pointless. */
export async function loadDataset(source: string): Promise<Dataset> {
  if (!existsSync(source)) throw new UsageError(`${source}: no such folder or manifest`);
  const info = await stat(source).catch((err: unknown) => {
    throw asFileSystemError(source, err);
  });
  const dataset = info.isDirectory() ? await scanFolder(source) : await readManifest(source);
  if (dataset.items.length === 0) {
    throw new UsageError(`${source}: no images found (looked for ${[...IMAGE_EXTENSIONS].join(' ')} in it and in class subfolders)`);
  }
  // One class folder and nothing else is most often the class folder itself given by mistake.
  if (dataset.classes.length === 1 && dataset.items.every((i) => i.label !== null)) {
    throw new UsageError(`${source}: only one class (${dataset.classes[0]}); a classifier needs at least two class folders`);
  }
  return dataset;
}

/** Images with a label, and the classes they name. */
export function labelledItems(items: readonly DatasetItem[]): (DatasetItem & { readonly label: string })[] {
  return items.filter((i): i is DatasetItem & { readonly label: string } => i.label !== null);
}

function classesOf(items: readonly DatasetItem[]): string[] {
  return [...new Set(labelledItems(items).map((i) => i.label))].sort();
}

export async function scanFolder(root: string): Promise<Dataset> {
  const unlisted: { path: string; reason: string }[] = [];
  const top = (await listEntries(root, unlisted, root, false)).filter((e) => e.dirent.isDirectory()).map((e) => e.name);
  const splitDirs = top.filter((name) => SPLIT_NAMES.has(name.toLowerCase()));
  // With split folders, class folders sit one level down; a mix of both is a layout error.
  const layout: { dir: string; split: Split | null }[] =
    splitDirs.length > 0 ? splitDirs.map((d) => ({ dir: d, split: SPLIT_NAMES.get(d.toLowerCase())! })) : [{ dir: '', split: null }];
  if (splitDirs.length > 0 && splitDirs.length !== top.length) {
    const others = top.filter((t) => !splitDirs.includes(t));
    throw new UsageError(`${root}: mixes split folders (${splitDirs.join(', ')}) with other folders (${others.join(', ')})`);
  }

  const items: DatasetItem[] = [];
  const add = (file: string, label: string | null, split: Split | null) => items.push({ file, path: toPosix(path.relative(root, file)), label, split });
  for (const { dir, split } of layout) {
    const classDirs = dir === '' ? top : (await listEntries(path.join(root, dir), unlisted, root, false)).filter((e) => e.dirent.isDirectory()).map((e) => e.name);
    // Images beside the class folders (or in a folder with none) belong to no class.
    for await (const entry of walkImages(path.join(root, dir), unlisted, root, false)) add(entry, null, split);
    for (const label of classDirs) {
      for await (const entry of walkImages(path.join(root, dir, label), unlisted, root)) add(entry, label, split);
    }
  }
  items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const abs = path.resolve(root);
  const unlabeled = items.filter((i) => i.label === null).length;
  const warnings = unlabeled > 0 && unlabeled < items.length ? [`${unlabeled} image(s) outside the class folders are unlabeled (train-head leaves them out)`] : [];
  return { name: path.basename(abs), root: abs, source: abs, items, classes: classesOf(items), unlisted, warnings };
}

/** Image files under a folder (recursively, unless told not to); symlinks are followed once, loops reported. */
async function* walkImages(dir: string, unlisted: { path: string; reason: string }[], root: string, recursive = true): AsyncGenerator<string> {
  // Without recursion, the folders here are listed (and reported) by the caller.
  for (const { name, dirent: entry } of await listEntries(dir, unlisted, root, true, recursive)) {
    const full = path.join(dir, name);
    const isImageName = IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());
    if (entry.isDirectory()) {
      if (recursive) yield* walkImages(full, unlisted, root);
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
async function listEntries(dir: string, unlisted: { path: string; reason: string }[], root: string, files = true, folders = true): Promise<{ name: string; dirent: Dirent<Buffer> }[]> {
  const entries: { name: string; dirent: Dirent<Buffer> }[] = [];
  let dirents: Dirent<Buffer>[];
  try {
    dirents = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    // The data folder itself is the user's error; one unreadable folder inside it is one entry's.
    if (path.resolve(dir) === path.resolve(root)) throw asFileSystemError(dir, err);
    unlisted.push({ path: toPosix(path.relative(root, dir)), reason: `the folder cannot be listed (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
    return [];
  }
  for (const dirent of dirents) {
    let name: string;
    try {
      name = strictUtf8.decode(dirent.name);
    } catch {
      // Non-ASCII bytes as \xNN: what the user needs to find and rename the entry.
      const shown = [...dirent.name].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
      if ((folders && dirent.isDirectory()) || (files && !dirent.isDirectory() && IMAGE_EXTENSIONS.has(path.extname(shown).toLowerCase()))) {
        const what = dirent.isDirectory() ? 'folder' : 'file';
        unlisted.push({ path: toPosix(path.relative(root, path.join(dir, shown))), reason: `the ${what} name is not valid UTF-8, so it cannot be read; rename it` });
      }
      continue;
    }
    entries.push({ name, dirent });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

type ManifestRow = Readonly<Record<string, unknown>>;

/** `path[,label][,split]` as CSV with a header, or JSON lines; paths are relative to the manifest; no label, no class. */
export async function readManifest(file: string): Promise<Dataset> {
  const root = path.dirname(path.resolve(file));
  const text = /\.(jsonl?|csv)$/i.test(file) ? await readTextCapped(file, MAX_MANIFEST_BYTES) : '';
  let rows: { row: ManifestRow; line: number }[];
  if (/\.jsonl?$/i.test(file)) rows = jsonLines(text, file);
  else if (/\.csv$/i.test(file)) rows = csvRows(text, file);
  else throw new UsageError(`${file}: a manifest must be .csv or .jsonl`);
  const { items, warnings } = uniqueItems(rows.map(({ row, line }) => ({ item: manifestItem(row, `${file}:${line}`, root), line })), file);
  const name = path.basename(file).replace(/\.(csv|jsonl?)$/i, '');
  return { name, root, source: path.resolve(file), items, classes: classesOf(items), unlisted: [], warnings };
}

function jsonLines(text: string, file: string): { row: ManifestRow; line: number }[] {
  const rows: { row: ManifestRow; line: number }[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file}:${i + 1}`;
    if (line.length > MAX_ROW_CHARS) throw new UsageError(`${where}: the line is over ${MAX_ROW_CHARS} characters long; is this a manifest?`);
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new UsageError(`${where}: not valid JSON`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${where}: each line must be a JSON object such as {"path": "a.jpg", "label": "cat"}`);
    rows.push({ row: value as ManifestRow, line: i + 1 });
  });
  return rows;
}

function csvRows(text: string, file: string): { row: ManifestRow; line: number }[] {
  let records: ManifestRow[];
  try {
    records = parseCsv(text, { columns: true, skip_empty_lines: true, trim: true, bom: true, max_record_size: MAX_ROW_CHARS }) as ManifestRow[];
  } catch (err) {
    if (err instanceof CsvError) throw new UsageError(`${file}:${String((err as CsvError & { lines?: number }).lines ?? '?')}: ${err.message.replace(/^Invalid Record Length: /, '')}`);
    throw err;
  }
  if (records.length && !('path' in records[0])) {
    throw new UsageError(`${file}: the CSV header must name the columns path[,label][,split]`);
  }
  return records.map((row, i) => ({ row, line: i + 2 }));
}

function manifestItem(row: ManifestRow, where: string, root: string): DatasetItem {
  const { path: p, label, split } = row;
  if (typeof p !== 'string' || !p) throw new UsageError(`${where}: missing 'path' (a string)`);
  const unlabeled = label === undefined || label === null || label === '';
  if (!unlabeled && typeof label !== 'string' && !(typeof label === 'number' && Number.isFinite(label))) {
    throw new UsageError(`${where}: 'label' must be a string (or a number), not ${Array.isArray(label) ? 'an array' : typeof label}`);
  }
  if (split !== undefined && split !== null && typeof split !== 'string') throw new UsageError(`${where}: 'split' must be a string`);
  const abs = path.resolve(root, p);
  return { file: abs, path: toPosix(path.relative(root, abs)), label: unlabeled ? null : String(label), split: parseSplit(split, where) };
}

/** A path listed twice is one image: kept once, with a warning; listed with two labels or splits, an error. */
function uniqueItems(rows: readonly { item: DatasetItem; line: number }[], file: string): { items: DatasetItem[]; warnings: string[] } {
  const first = new Map<string, { item: DatasetItem; line: number }>();
  const repeats = new Map<string, number[]>();
  for (const r of rows) {
    const seen = first.get(r.item.path);
    if (!seen) {
      first.set(r.item.path, r);
      continue;
    }
    if (seen.item.label !== r.item.label || seen.item.split !== r.item.split) {
      throw new UsageError(`${file}:${r.line}: ${r.item.path} is listed again with another label or split (first at line ${seen.line})`);
    }
    repeats.set(r.item.path, [...(repeats.get(r.item.path) ?? [seen.line]), r.line]);
  }
  const warnings = [...repeats].map(([p, lines]) => `${file}: ${p} is listed ${lines.length} times (lines ${lines.join(', ')}); it is one image`);
  return { items: [...first.values()].map((r) => r.item), warnings };
}

function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}
