/**
 * New images in, network-ready batches out: decoded exactly as extract decoded the codes a
 * head was trained on (the same size, resize mode, interpolation and background), so a
 * prediction on an image equals the head on that image's cached code.
 */
import type { Preprocessing } from '../backbones/backbone.ts';
import { preprocessInto } from '../backbones/preprocess.ts';
import type { CodeSpec } from '../cache/code-spec.ts';
import { DecodeError, decodeImage, type DecodeOptions } from '../extract/decode-image.ts';
import { orderedPool } from '../extract/ordered-pool.ts';

export interface ImageBatch {
  /** The images decoded, in input order; `images` holds them as NHWC float32. */
  readonly files: readonly string[];
  readonly images: Float32Array;
  /** Images that could not be decoded, with the reason; they are not in `files`. */
  readonly failures: readonly { readonly file: string; readonly reason: string }[];
}

export function decodeOptionsFor(p: CodeSpec['preprocessing']): DecodeOptions {
  return {
    size: p.size,
    resize: p.resize,
    interpolation: p.interpolation,
    ...(p.cropFraction ? { cropFraction: p.cropFraction } : {}),
    background: { r: p.background[0], g: p.background[1], b: p.background[2] },
  };
}

export async function* imageBatches(
  files: readonly string[],
  opts: { readonly preprocessing: Preprocessing; readonly decode: DecodeOptions; readonly batch: number; readonly concurrency?: number },
): AsyncGenerator<ImageBatch> {
  const [h, w] = opts.decode.size;
  const perImage = h * w * 3;
  const prep = { ...opts.preprocessing, size: opts.decode.size };
  const decoded = orderedPool(
    files,
    async (file): Promise<{ file: string; pixels: Uint8Array } | { file: string; reason: string }> => {
      try {
        return { file, pixels: await decodeImage(file, opts.decode) };
      } catch (err) {
        const reason = err instanceof DecodeError ? err.message : `${file}: ${err instanceof Error ? err.message : String(err)}`;
        return { file, reason };
      }
    },
    { concurrency: opts.concurrency ?? 4, window: opts.batch * 2 },
  );
  let pending: { file: string; pixels: Uint8Array }[] = [];
  let failures: { file: string; reason: string }[] = [];
  const emit = (): ImageBatch => {
    const images = new Float32Array(pending.length * perImage);
    pending.forEach((p, i) => preprocessInto(p.pixels, prep, images, i * perImage));
    const batch = { files: pending.map((p) => p.file), images, failures };
    pending = [];
    failures = [];
    return batch;
  };
  for await (const result of decoded) {
    if ('reason' in result) failures.push(result);
    else pending.push(result);
    if (pending.length === opts.batch) yield emit();
  }
  if (pending.length > 0 || failures.length > 0) yield emit();
}
