/**
 * The 1000 ImageNet class names for `predict --imagenet`, found as Keras' decode_predictions
 * finds them: Keras' imagenet_class_index.json, downloaded once (md5-checked) into the weights
 * folder and reused from there. All the zoo's backbones (vgg16, squeezenet1_1, googlenet)
 * output the standard sorted-wnid order that file is in.
 *
 * Looked for, in order: a file the user names (--imagenet-classes FILE); imagenet-classes.json
 * (a JSON array of 1000 names) or imagenet_class_index.json (Keras' object) in the weights
 * folders; a download. When the download is off or fails, predictions still run, with generic
 * names (`class 0` … `class 999`) and a `source` saying how to get the real ones.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { downloadFile, progressBarReporter } from '../backbones/download.ts';
import { UsageError } from '../util/errors.ts';

export const IMAGENET_CLASS_INDEX = {
  file: 'imagenet_class_index.json',
  md5: 'c2c37ea517e94d9795004a39431a14cb',
  url: 'https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json',
} as const;

/** A plain JSON array of the 1000 names, in the same order (as in ../shared/models). */
export const IMAGENET_CLASS_NAMES_FILE = 'imagenet-classes.json';

export const IMAGENET_CLASS_COUNT = 1000;

export interface ImageNetClass {
  /** WordNet id (`n02123045`), when the source has it: Keras' file does, a plain list of names does not. */
  readonly wnid: string | null;
  /** The human name shown to users (`tabby`). */
  readonly name: string;
}

export interface ImageNetClasses {
  readonly classes: readonly ImageNetClass[];
  /** Where the names came from (a file path, or a download), or, for generic names, why and how to get real ones. */
  readonly source: string;
  /** `generic`: the `class N` fallback; `download`: fetched just now into the weights folder. */
  readonly origin: 'file' | 'folder' | 'download' | 'generic';
}

export interface ImageNetClassesOptions {
  /** A class list given by the user (--imagenet-classes FILE): Keras' class-index object or a JSON array of names. */
  readonly file?: string;
  /** The weights folder: looked in, and where the download goes. */
  readonly weightsDir: string;
  /** Folders looked in before weightsDir (say, the folder of the weights actually loaded). */
  readonly alsoLookIn?: readonly string[];
  /** Allow downloading Keras' class index when no folder has one (default true). */
  readonly download?: boolean;
  /**
   * Where the class index is served: a folder URL (imagenet_class_index.json is appended) or the
   * full URL of a `.json` file. Defaults to $BOTTLENECK_CLASSES_URL, then Keras' own location.
   */
  readonly baseUrl?: string;
  /** Expected md5 of the download; Keras' by default. For mirrors serving another build, and tests. */
  readonly md5?: string;
}

/** The 1000 ImageNet classes, from the first source that has them; never throws for a missing or undownloadable list. */
export async function imagenetClasses(opts: ImageNetClassesOptions): Promise<ImageNetClasses> {
  if (opts.file !== undefined) {
    if (!existsSync(opts.file)) throw new UsageError(`--imagenet-classes ${opts.file}: no such file`);
    return { classes: await readImageNetClassFile(opts.file), source: opts.file, origin: 'file' };
  }
  const dirs = [...new Set([...(opts.alsoLookIn ?? []), opts.weightsDir])];
  const local = await findImageNetClasses(dirs);
  if (local) return { ...local, origin: 'folder' };

  const dest = path.join(opts.weightsDir, IMAGENET_CLASS_INDEX.file);
  const md5 = opts.md5 ?? IMAGENET_CLASS_INDEX.md5;
  const url = classIndexUrl(opts.baseUrl ?? (process.env.BOTTLENECK_CLASSES_URL || IMAGENET_CLASS_INDEX.url));
  if (opts.download === false) return genericClasses(`downloads are off`, url, md5, opts.weightsDir);
  try {
    await downloadFile({
      url,
      dest,
      md5,
      onProgress: progressBarReporter(IMAGENET_CLASS_INDEX.file),
    });
  } catch (error) {
    return genericClasses(firstSentence(error instanceof Error ? error.message : String(error)), url, md5, opts.weightsDir);
  }
  return { classes: await readImageNetClassFile(dest), source: `${dest} (downloaded from ${url})`, origin: 'download' };
}

/** The class list in the first of `dirs` holding imagenet-classes.json or imagenet_class_index.json. */
export async function findImageNetClasses(dirs: readonly string[]): Promise<{ classes: readonly ImageNetClass[]; source: string } | undefined> {
  for (const dir of dirs) {
    for (const name of [IMAGENET_CLASS_NAMES_FILE, IMAGENET_CLASS_INDEX.file]) {
      const file = path.join(dir, name);
      if (existsSync(file)) return { classes: await readImageNetClassFile(file), source: file };
    }
  }
  return undefined;
}

/**
 * Reads and checks a class list: Keras' `{"0": ["n01440764", "tench"], …, "999": […]}` or a
 * JSON array of 1000 names. Anything else is a UsageError naming the file and the problem.
 */
export async function readImageNetClassFile(file: string): Promise<ImageNetClass[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file}: not valid JSON (${oneLine((error as Error).message)})`);
  }
  return parseImageNetClasses(json, file);
}

/** `where` names the source in error messages. */
export function parseImageNetClasses(json: unknown, where: string): ImageNetClass[] {
  const bad = (problem: string) => new UsageError(`${where}: ${problem}; expected Keras' imagenet_class_index.json ({"0": ["n01440764", "tench"], …, "999": […]}) or a JSON array of ${IMAGENET_CLASS_COUNT} class names`);
  if (Array.isArray(json)) {
    if (json.length !== IMAGENET_CLASS_COUNT) throw bad(`an array of ${json.length} entries, not ${IMAGENET_CLASS_COUNT}`);
    return json.map((entry, i) => {
      if (typeof entry === 'string' && entry.trim() !== '') return { wnid: null, name: entry };
      if (isPair(entry)) return { wnid: entry[0], name: entry[1] };
      throw bad(`entry ${i} is ${describe(entry)}, not a class name`);
    });
  }
  if (json === null || typeof json !== 'object') throw bad(`it holds ${describe(json)}`);
  const entries = Object.entries(json);
  if (entries.length !== IMAGENET_CLASS_COUNT) throw bad(`an object with ${entries.length} keys, not ${IMAGENET_CLASS_COUNT}`);
  const classes: ImageNetClass[] = new Array(IMAGENET_CLASS_COUNT);
  for (const [key, value] of entries) {
    const index = /^(0|[1-9]\d*)$/.test(key) ? Number(key) : NaN;
    if (!(index < IMAGENET_CLASS_COUNT)) throw bad(`key "${key}" is not an index from 0 to ${IMAGENET_CLASS_COUNT - 1}`);
    if (!isPair(value)) throw bad(`entry "${key}" is ${describe(value)}, not [wnid, name]`);
    classes[index] = { wnid: value[0], name: value[1] };
  }
  return classes;
}

/** `class 0` … `class 999`, for when no list can be had. */
export function genericImageNetClasses(count = IMAGENET_CLASS_COUNT): ImageNetClass[] {
  return Array.from({ length: count }, (_, i) => ({ wnid: null, name: `class ${i}` }));
}

function genericClasses(reason: string, url: string, md5: string, weightsDir: string): ImageNetClasses {
  return {
    classes: genericImageNetClasses(),
    origin: 'generic',
    source:
      `ImageNet class names unavailable (${reason.replace(/\.$/, '')}), so classes are shown as 'class N'. ` +
      `To get the names, put ${IMAGENET_CLASS_INDEX.file} (from ${url}, md5 ${md5}) or ` +
      `${IMAGENET_CLASS_NAMES_FILE} (a JSON array of ${IMAGENET_CLASS_COUNT} names) in ${weightsDir}, or pass --imagenet-classes FILE.`,
  };
}

/** A `.json` URL as it is; a folder URL with the file name appended. */
export function classIndexUrl(base: string): string {
  return /\.json([?#].*)?$/i.test(base) ? base : `${base.replace(/\/+$/, '')}/${IMAGENET_CLASS_INDEX.file}`;
}

function isPair(value: unknown): value is [string, string] {
  return Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string' && v.trim() !== '');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** DownloadError messages go on to advise `--weights PATH`, which is wrong here; keep what happened. */
function firstSentence(message: string): string {
  const m = /^(.*?[.;])(\s|$)/s.exec(message);
  return oneLine((m ? m[1] : message).replace(/;$/, ''));
}
