/**
 * TF.js layers-model folders: `model.json` with `modelTopology` and `weightsManifest`, plus the
 * binary shards it lists. Each manifest group's shards, concatenated in order, hold that group's
 * weights back to back, in manifest order, little-endian.
 */
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WeightsError, type WeightSource, type WeightTensor } from '../weights.ts';
import { decodeFloat16, elementCount, isShape } from './dtypes.ts';
import { describeFsError, readFully } from './files.ts';

export interface TfjsModel {
  /** The parsed `modelTopology` (for layers models, Keras' model config), for a graph builder to interpret. */
  readonly topology: unknown;
  /** `format` from model.json, e.g. 'layers-model'. */
  readonly format: string;
  /** Convention 'keras'. `files` is model.json, then the shards. */
  readonly source: WeightSource;
}

/** TF.js weight quantization: value = q * scale + min for integers; float16 is just narrower. */
type Quantization =
  | { readonly dtype: 'uint8' | 'uint16'; readonly scale: number; readonly min: number }
  | { readonly dtype: 'float16' };

interface ManifestWeight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly quantization?: Quantization;
}

interface ManifestGroup {
  readonly paths: readonly string[];
  readonly weights: readonly ManifestWeight[];
}

const QUANTIZED_BYTES = { uint8: 1, uint16: 2, float16: 2 } as const;

export async function readTfjsModel(modelJsonPath: string): Promise<TfjsModel> {
  const json = await readModelJson(modelJsonPath);
  const groups = parseManifest(json.weightsManifest, modelJsonPath);
  const dir = path.dirname(modelJsonPath);
  const stored = new Map<string, WeightTensor>();
  const shardFiles: string[] = [];
  for (const [index, group] of groups.entries()) {
    const files = group.paths.map((p) => path.join(dir, p));
    shardFiles.push(...files);
    const sizes = await shardSizes(files, modelJsonPath, index);
    checkGroupSize(group, files, sizes, modelJsonPath);
    const shards = new ShardReader(files);
    try {
      for (const weight of group.weights) {
        if (stored.has(weight.name)) {
          throw new WeightsError(`${modelJsonPath}: weight '${weight.name}' is listed twice`);
        }
        stored.set(weight.name, { shape: weight.shape, data: await readWeight(shards, weight) });
      }
    } catch (error) {
      if (error instanceof WeightsError) throw error;
      throw new WeightsError(`${modelJsonPath}: reading its weight shards failed: ${describeFsError(error)}`);
    } finally {
      await shards.close();
    }
  }
  const format = typeof json.format === 'string' ? json.format : 'layers-model';
  return {
    topology: json.modelTopology,
    format,
    source: { convention: 'keras', tensors: withLayerSuffixes(stored), files: [modelJsonPath, ...shardFiles] },
  };
}

async function readModelJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new WeightsError(`${file}: cannot read TF.js model.json: ${describeFsError(error)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new WeightsError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (!isRecord(json) || !('modelTopology' in json) || !('weightsManifest' in json)) {
    throw new WeightsError(`${file}: not a TF.js model.json (needs 'modelTopology' and 'weightsManifest')`);
  }
  return json;
}

function parseManifest(manifest: unknown, file: string): ManifestGroup[] {
  const fail = (what: string) => new WeightsError(`${file}: bad weightsManifest: ${what}`);
  if (!Array.isArray(manifest)) throw fail('not a list');
  return manifest.map((group, g) => {
    if (!isRecord(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw fail(`group ${g} needs 'paths' and 'weights' lists`);
    }
    const paths = group.paths.map((p) => {
      // Shard paths are relative URLs; one that escapes the folder is not a shard of this model.
      if (typeof p !== 'string' || p === '' || path.isAbsolute(p) || p.split(/[\\/]/).includes('..')) {
        throw fail(`group ${g} has shard path ${JSON.stringify(p)}`);
      }
      return p;
    });
    const weights = group.weights.map((w): ManifestWeight => {
      if (!isRecord(w) || typeof w.name !== 'string') throw fail(`group ${g} has a weight without a name`);
      if (!isShape(w.shape)) throw fail(`weight '${w.name}' has shape ${JSON.stringify(w.shape)}`);
      const quantization = parseQuantization(w, fail);
      if (!quantization && w.dtype !== 'float32') {
        throw fail(`weight '${w.name}' has dtype ${JSON.stringify(w.dtype)}; only float32 weights are supported`);
      }
      return { name: w.name, shape: w.shape, ...(quantization && { quantization }) };
    });
    return { paths, weights };
  });
}

function parseQuantization(
  weight: Record<string, unknown>,
  fail: (what: string) => WeightsError,
): Quantization | undefined {
  const q = weight.quantization;
  if (q === undefined) return undefined;
  if (!isRecord(q)) throw fail(`weight '${String(weight.name)}' has quantization ${JSON.stringify(q)}`);
  if (q.dtype === 'float16') return { dtype: 'float16' };
  if ((q.dtype === 'uint8' || q.dtype === 'uint16') && typeof q.scale === 'number' && typeof q.min === 'number') {
    return { dtype: q.dtype, scale: q.scale, min: q.min };
  }
  throw fail(
    `weight '${String(weight.name)}' has quantization ${JSON.stringify(q)}; ` +
      'supported: float16, and uint8/uint16 with scale and min',
  );
}

function weightBytes(w: ManifestWeight): number {
  return elementCount(w.shape) * (w.quantization ? QUANTIZED_BYTES[w.quantization.dtype] : 4);
}

async function shardSizes(files: readonly string[], modelJson: string, group: number): Promise<number[]> {
  return Promise.all(
    files.map(async (file) => {
      try {
        return (await stat(file)).size;
      } catch (error) {
        throw new WeightsError(
          `${modelJson}: weight shard ${path.basename(file)} (group ${group + 1}) cannot be read: ` +
            `${describeFsError(error)} (${file})`,
        );
      }
    }),
  );
}

/**
 * The manifest does not give shard sizes, only what the weights need in total. The converter
 * cuts shards of one size with a shorter last one, so the first shard that is shorter than the
 * largest, else the last, is the one to blame when the total falls short.
 */
function checkGroupSize(
  group: ManifestGroup,
  files: readonly string[],
  sizes: readonly number[],
  modelJson: string,
): void {
  const needed = group.weights.reduce((n, w) => n + weightBytes(w), 0);
  const total = sizes.reduce((n, s) => n + s, 0);
  if (total === needed) return;
  const largest = Math.max(...sizes);
  let culprit = sizes.findIndex((s, i) => i < sizes.length - 1 && s < largest);
  if (culprit < 0) culprit = sizes.length - 1;
  const problem =
    total < needed
      ? `shard ${path.basename(files[culprit])} looks short (${sizes[culprit]} bytes; the others hold up to ${largest})`
      : 'the shards hold more than the manifest describes';
  throw new WeightsError(
    `${modelJson}: its weights need ${needed} bytes but the ${files.length} shard(s) hold ${total}: ` +
      `${problem}. Re-download or re-convert the model (${path.dirname(files[culprit])})`,
  );
}

async function readWeight(shards: ShardReader, weight: ManifestWeight): Promise<Float32Array> {
  const q = weight.quantization;
  if (!q) {
    // Straight into the tensor's own storage: no intermediate copy of VGG16's 400 MB fc1.
    const data = new Float32Array(elementCount(weight.shape));
    await shards.readInto(new Uint8Array(data.buffer));
    return data;
  }
  const bytes = new Uint8Array(weightBytes(weight));
  await shards.readInto(bytes);
  if (q.dtype === 'float16') return decodeFloat16(bytes);
  const values = q.dtype === 'uint8' ? bytes : new Uint16Array(bytes.buffer);
  const data = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = values[i] * q.scale + q.min;
  return data;
}

/** Reads consecutive bytes across a group's shard files as if they were one file. */
class ShardReader {
  private index = 0;
  private position = 0;
  private handle: FileHandle | undefined;

  constructor(private readonly files: readonly string[]) {}

  async readInto(target: Uint8Array): Promise<void> {
    let done = 0;
    while (done < target.length) {
      // Sizes were checked up front, so this only happens if a shard shrinks while being read.
      if (this.index >= this.files.length) throw new Error('the shards ended early');
      this.handle ??= await open(this.files[this.index], 'r');
      const got = await readFully(this.handle, target.subarray(done), this.position);
      done += got;
      this.position += got;
      if (done < target.length) await this.next();
    }
  }

  private async next(): Promise<void> {
    await this.close();
    this.index++;
    this.position = 0;
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

/**
 * Some converters prefix weight names with the model's name (`vgg16/block1_conv1/kernel`).
 * Whether a leading segment is such a prefix or part of the layer name is ambiguous, so names
 * are kept as stored and each is also registered under its last two segments, `<layer>/<var>`,
 * unless that collides with a stored name or another weight's suffix.
 */
function withLayerSuffixes(stored: ReadonlyMap<string, WeightTensor>): Map<string, WeightTensor> {
  const suffixOf = (name: string) => name.split('/').slice(-2).join('/');
  const counts = new Map<string, number>();
  for (const name of stored.keys()) counts.set(suffixOf(name), (counts.get(suffixOf(name)) ?? 0) + 1);
  const out = new Map(stored);
  for (const [name, tensor] of stored) {
    const suffix = suffixOf(name);
    if (suffix !== name && !stored.has(suffix) && counts.get(suffix) === 1) out.set(suffix, tensor);
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
