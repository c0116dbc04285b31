/**
 * An image of the data as it appears in an HTML report (evaluate's, audit's): a small inlined
 * JPEG, or a placeholder saying why not. Only the file extract accepted is shown: read with
 * extract's byte cap, its content hash checked against the row's (a file replaced since, or
 * swapped for a link to something else, is not inlined into a report), decoded with extract's
 * checks.
 */
import { createHash } from 'node:crypto';
import { readImageFile, thumbnailJpeg } from '../extract/decode-image.ts';
import { escapeHtml } from '../util/html.ts';

export async function thumbnailHtml(file: string | null, sha256: string, alt: string, size: number): Promise<string> {
  if (file === null) return placeholderHtml('image file not available');
  try {
    const bytes = await readImageFile(file);
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) return placeholderHtml('the file has changed since its code was extracted');
    const { data, width, height } = await thumbnailJpeg(bytes, alt, size);
    return `<img src="data:image/jpeg;base64,${data.toString('base64')}" width="${width}" height="${height}" alt="${escapeHtml(alt)}">`;
  } catch (error) {
    return placeholderHtml(`cannot read image: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function placeholderHtml(reason: string): string {
  const text = reason.length > 160 ? `${reason.slice(0, 157)}…` : reason;
  return `<div class="placeholder">${escapeHtml(text)}</div>`;
}
