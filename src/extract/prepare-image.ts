/**
 * The first step for each image of an extract: read it once, hash exactly those bytes, and
 * decode only what some key still lacks (the image itself, and the augmented views a training
 * image needs). Runs many at a time on libuv's threads (see run-extract.ts).
 */
import { createHash } from 'node:crypto';
import type { FailedImage } from '../cache/errors-table.ts';
import type { Member } from '../cache/membership.ts';
import { augmentedView } from './augment.ts';
import type { DatasetItem } from './dataset.ts';
import { DecodeError, decodeImage, readImageFile, type DecodeOptions } from './decode-image.ts';

/** Decoded pixels of one forward pass's input: the image (view 0) or one of its views. */
export interface Pixels {
  readonly view: number;
  readonly pixels: Uint8Array;
}

export type Prepared =
  /** Every key already holds (or this run already computes) what the image needs. */
  | { readonly kind: 'ready'; readonly member: Member; readonly inputs: readonly Pixels[] }
  | { readonly kind: 'failed'; readonly failure: FailedImage }
  /** Another process of a sharded run takes this image. */
  | { readonly kind: 'elsewhere' };

export interface PrepareContext {
  readonly decode: Omit<DecodeOptions, 'source'>;
  /** Views this image needs (0 for validation and test images, which are never augmented). */
  readonly viewCount: (item: DatasetItem) => number;
  readonly augmentSeed: number;
  /** Whether some key lacks the code of this content's view (0: the image itself). */
  readonly needs: (sha256: string, view: number) => boolean;
  /** False for an image that another process of a sharded run takes. */
  readonly mine: (sha256: string) => boolean;
  readonly signal?: AbortSignal;
}

export async function prepareImage(item: DatasetItem, ctx: PrepareContext): Promise<Prepared> {
  try {
    const bytes = await readImageFile(item.file, { signal: ctx.signal });
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (!ctx.mine(sha256)) return { kind: 'elsewhere' };
    const source = { ...ctx.decode, source: item.path };
    const inputs: Pixels[] = [];
    if (ctx.needs(sha256, 0)) inputs.push({ view: 0, pixels: await decodeImage(bytes, source) });
    for (let view = 1; view <= ctx.viewCount(item); view++) {
      if (ctx.needs(sha256, view)) inputs.push({ view, pixels: await augmentedView(bytes, sha256, view, ctx.augmentSeed, source) });
    }
    return { kind: 'ready', member: { path: item.path, label: item.label, split: item.split, sha256 }, inputs };
  } catch (err) {
    const reason = err instanceof DecodeError ? err.reason : 'error';
    const message = err instanceof Error ? err.message : String(err);
    return { kind: 'failed', failure: { path: item.path, label: item.label, split: item.split, reason, message } };
  }
}
