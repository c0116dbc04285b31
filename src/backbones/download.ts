/**
 * Downloads of pretrained weights: resumable (`<dest>.part` and HTTP Range), md5-checked, and
 * atomic, so `dest` only ever holds a complete file with the expected checksum.
 */
import { isLiveTerminal } from '../util/terminal.ts';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { fsyncPath } from '../util/atomic-file.ts';
import { UserError } from '../util/errors.ts';

export interface DownloadOptions {
  readonly url: string;
  readonly dest: string;
  /**
   * Hex md5 of the complete file; a download that does not match it is deleted. Undefined only
   * where the file's publisher lists none (Keras' MobileNet files): then nothing is checked.
   */
  readonly md5: string | undefined;
  /** Size of the complete file, when known; otherwise the server's Content-Length is used. */
  readonly expectedBytes?: number;
  /** Called as bytes arrive; `received` counts bytes already in a resumed part. */
  readonly onProgress?: (received: number, total: number | undefined) => void;
  readonly signal?: AbortSignal;
}

export class DownloadError extends UserError {
  constructor(
    message: string,
    readonly url: string,
    readonly dest: string,
  ) {
    super(message);
  }
}

export async function downloadFile(opts: DownloadOptions): Promise<void> {
  try {
    await attempt(opts);
  } finally {
    // A bar left running would keep redrawing, and its timer would keep the process alive.
    if (isProgressReporter(opts.onProgress)) opts.onProgress.stop();
  }
}

async function attempt(opts: DownloadOptions): Promise<void> {
  const part = `${opts.dest}.part`;
  await mkdir(path.dirname(opts.dest), { recursive: true });
  const existing = await fileSize(part);
  const partHash = createHash('md5');
  if (existing > 0) await hashFileInto(part, partHash);

  const response = await request(opts, existing);
  if (existing > 0 && response.status === 416) {
    // Nothing past the part's end: it is either the whole file or junk (say, from another file).
    await response.body?.cancel();
    if (opts.md5 === undefined || partHash.digest('hex') === opts.md5.toLowerCase()) return finish(part, opts.dest);
    await rm(part, { force: true });
    return attempt(opts);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw unreachable(opts, `HTTP ${response.status} ${response.statusText}`.trim());
  }
  // A server that ignores Range answers 200 with the whole file, which replaces the part.
  const resumed = existing > 0 && response.status === 206;
  if (resumed && rangeStart(response) !== existing) {
    await response.body.cancel();
    await rm(part, { force: true });
    return attempt(opts);
  }
  const offset = resumed ? existing : 0;
  const hasher = resumed ? partHash : createHash('md5');
  const total = opts.expectedBytes ?? contentTotal(response, offset);

  const received = await receive(response.body, part, offset, hasher, total, opts);
  if (opts.expectedBytes !== undefined && received < opts.expectedBytes) {
    throw unreachable(opts, `the connection ended after ${received} of ${opts.expectedBytes} bytes`, received);
  }
  const actual = hasher.digest('hex');
  if (opts.md5 !== undefined && actual !== opts.md5.toLowerCase()) {
    await rm(part, { force: true });
    throw new DownloadError(
      `${path.basename(opts.dest)} downloaded from ${opts.url} has md5 ${actual}, expected ${opts.md5}; ` +
        `the download was deleted. Check the URL, or get the file by other means and put it at ${opts.dest}.`,
      opts.url,
      opts.dest,
    );
  }
  await finish(part, opts.dest);
}

async function request(opts: DownloadOptions, from: number): Promise<Response> {
  try {
    return await fetch(opts.url, {
      headers: from > 0 ? { Range: `bytes=${from}-` } : {},
      signal: opts.signal,
    });
  } catch (error) {
    if (opts.signal?.aborted) throw error;
    throw unreachable(opts, networkReason(error), from);
  }
}

/** Appends the body to the part (or overwrites it from 0), hashing as it goes; returns the part's size. */
async function receive(
  body: ReadableStream<Uint8Array>,
  part: string,
  offset: number,
  hasher: Hash,
  total: number | undefined,
  opts: DownloadOptions,
): Promise<number> {
  const handle = await open(part, offset > 0 ? 'a' : 'w');
  let received = offset;
  try {
    opts.onProgress?.(received, total);
    for await (const chunk of body) {
      await handle.write(chunk);
      hasher.update(chunk);
      received += chunk.length;
      opts.onProgress?.(received, total);
    }
    await handle.sync();
  } catch (error) {
    if (opts.signal?.aborted) throw error;
    throw unreachable(opts, networkReason(error), received);
  } finally {
    await handle.close();
  }
  return received;
}

async function finish(part: string, dest: string): Promise<void> {
  await fsyncPath(part);
  await rename(part, dest);
}

/** The message a user without network access needs: what to fetch, and where to put it. */
function unreachable(opts: DownloadOptions, reason: string, partBytes = 0): DownloadError {
  const file = path.basename(opts.dest);
  const kept =
    partBytes > 0
      ? ` The ${partBytes} bytes received are kept in ${opts.dest}.part; running again resumes from there.`
      : '';
  return new DownloadError(
    `could not download ${file} from ${opts.url} (${reason}).${kept} Download it on a machine with network access ` +
      `and put it at ${opts.dest}${opts.md5 ? ` (md5 ${opts.md5})` : ''}, or pass --weights PATH.`,
    opts.url,
    opts.dest,
  );
}

/**
 * fetch reports every network failure as TypeError('fetch failed') or ('terminated'); the
 * cause says what happened: "connect ECONNREFUSED 127.0.0.1:80", "getaddrinfo ENOTFOUND host",
 * "Connect Timeout Error", "other side closed".
 */
function networkReason(error: unknown): string {
  const cause: unknown = error instanceof Error ? error.cause : undefined;
  // Happy-eyeballs connects fail with one error per address tried.
  const inner = cause instanceof AggregateError ? cause.errors[0] : cause;
  for (const e of [inner, cause, error]) {
    if (e instanceof Error && e.message) return e.message;
    const code = (e as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string') return code;
  }
  return String(error);
}

function rangeStart(response: Response): number | undefined {
  const match = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The complete file's size from Content-Range (`bytes 100-199/200`) or Content-Length. */
function contentTotal(response: Response, offset: number): number | undefined {
  const range = /\/(\d+)$/.exec(response.headers.get('content-range') ?? '');
  if (range) return Number(range[1]);
  const length = response.headers.get('content-length');
  return length === null ? undefined : offset + Number(length);
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function hashFileInto(file: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

/** An onProgress callback that draws something and must be stopped; downloadFile stops it when it returns or throws. */
export type ProgressReporter = ((received: number, total: number | undefined) => void) & { stop(): void };

function isProgressReporter(callback: DownloadOptions['onProgress']): callback is ProgressReporter {
  return typeof (callback as Partial<ProgressReporter> | undefined)?.stop === 'function';
}

/**
 * A progress bar on stderr (bytes, MB/s, ETA) for `downloadFile`'s onProgress; silent when
 * stderr is not a terminal, so logs and CI output stay clean.
 */
export function progressBarReporter(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  if (!isLiveTerminal(stream)) return Object.assign(() => {}, { stop() {} });
  let bar: cliProgress.SingleBar | undefined;
  let done = false;
  let start = { time: 0, bytes: 0 };
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
  const payload = (received: number) => {
    const seconds = (Date.now() - start.time) / 1000;
    return { got: mb(received), speed: seconds > 0 ? mb((received - start.bytes) / seconds) : '0.0' };
  };
  const stop = () => {
    bar?.stop();
    done = true;
  };
  const report = (received: number, total: number | undefined) => {
    if (done) return;
    if (!bar) {
      start = { time: Date.now(), bytes: received };
      const format =
        total === undefined
          ? `${label} {got} MB | {speed} MB/s`
          : `${label} [{bar}] {percentage}% | {got}/${mb(total)} MB | {speed} MB/s | ETA {eta_formatted}`;
      bar = new cliProgress.SingleBar({ format, stream, etaBuffer: 100 }, cliProgress.Presets.shades_classic);
      bar.start(total ?? 0, received, payload(received));
    }
    bar.update(received, payload(received));
    if (total !== undefined && received >= total) stop();
  };
  return Object.assign(report, { stop });
}
