import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DownloadError, downloadFile, progressBarReporter } from '../src/backbones/download.ts';

const content = randomBytes(1 << 20);
const md5 = createHash('md5').update(content).digest('hex');

interface Behaviour {
  /** Answer 200 with the whole file even to Range requests. */
  ignoreRange?: boolean;
  /** Send half the file on the first request, then drop the connection. */
  cutFirst?: boolean;
}

/** A file server on 127.0.0.1 that honours `Range: bytes=N-`, and records each request's Range header. */
class TestServer {
  readonly ranges: (string | undefined)[] = [];
  behaviour: Behaviour = {};
  private cut = false;
  private readonly server = http.createServer((req, res) => this.handle(req, res));

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  url(file = 'file.bin'): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/${file}`;
  }

  reset(behaviour: Behaviour = {}): void {
    this.behaviour = behaviour;
    this.ranges.length = 0;
    this.cut = false;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.ranges.push(req.headers.range);
    if (req.url !== '/file.bin') {
      res.writeHead(404).end('not found');
      return;
    }
    const total = content.length;
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? NaN);
    if (!Number.isNaN(start) && !this.behaviour.ignoreRange) {
      if (start >= total) {
        res.writeHead(416, { 'Content-Range': `bytes */${total}` }).end();
        return;
      }
      res.writeHead(206, { 'Content-Length': total - start, 'Content-Range': `bytes ${start}-${total - 1}/${total}` });
      res.end(content.subarray(start));
      return;
    }
    res.writeHead(200, { 'Content-Length': total });
    if (this.behaviour.cutFirst && !this.cut) {
      this.cut = true;
      res.write(content.subarray(0, total / 2), () => res.socket?.destroy());
      return;
    }
    res.end(content);
  }
}

const server = new TestServer();
let dir: string;
let dest: string;

beforeAll(() => server.start());
afterAll(() => server.close());
beforeEach(async () => {
  server.reset();
  dir = await mkdtemp(path.join(os.tmpdir(), 'bottleneck-download-'));
  dest = path.join(dir, 'weights', 'vgg16_notop.h5');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** A leftover `<dest>.part` from an earlier attempt. */
async function writePart(bytes: Uint8Array): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  await writeFile(`${dest}.part`, bytes);
}

async function downloadError(promise: Promise<void>): Promise<DownloadError> {
  const error = await promise.catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DownloadError);
  return error as DownloadError;
}

describe('downloadFile', () => {
  it('downloads, checks the md5 and reports progress', async () => {
    const progress: [number, number | undefined][] = [];
    await downloadFile({ url: server.url(), dest, md5, onProgress: (r, t) => progress.push([r, t]) });
    expect((await readFile(dest)).equals(content)).toBe(true);
    expect(existsSync(`${dest}.part`)).toBe(false);
    expect(server.ranges).toEqual([undefined]);
    expect(progress.at(-1)).toEqual([content.length, content.length]);
  });

  it('resumes an interrupted transfer with a Range request', async () => {
    server.reset({ cutFirst: true });
    const first = await downloadError(downloadFile({ url: server.url(), dest, md5 }));
    expect(first.message).toMatch(/could not download vgg16_notop.h5 .*running again resumes from there/);
    expect(existsSync(dest)).toBe(false);
    const partial = (await stat(`${dest}.part`)).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(content.length);

    const progress: number[] = [];
    await downloadFile({ url: server.url(), dest, md5, onProgress: (r) => progress.push(r) });
    expect(server.ranges).toEqual([undefined, `bytes=${partial}-`]);
    expect(progress[0]).toBe(partial);
    expect((await readFile(dest)).equals(content)).toBe(true);
    expect(existsSync(`${dest}.part`)).toBe(false);
  });

  it('starts over when the server ignores Range and answers 200', async () => {
    server.reset({ ignoreRange: true });
    await writePart(content.subarray(0, 1000));
    await downloadFile({ url: server.url(), dest, md5 });
    expect(server.ranges).toEqual(['bytes=1000-']);
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('finishes a part that is already complete (416) and replaces one that is junk', async () => {
    await writePart(content);
    await downloadFile({ url: server.url(), dest, md5 });
    expect(server.ranges).toEqual([`bytes=${content.length}-`]);
    expect((await readFile(dest)).equals(content)).toBe(true);

    server.reset();
    await rm(dest);
    await writePart(Buffer.concat([content, Buffer.from('junk')]));
    await downloadFile({ url: server.url(), dest, md5 });
    expect(server.ranges).toEqual([`bytes=${content.length + 4}-`, undefined]);
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('deletes a download with the wrong md5 and says which md5s differ', async () => {
    const wrong = '0123456789abcdef0123456789abcdef';
    const error = await downloadError(downloadFile({ url: server.url(), dest, md5: wrong }));
    expect(error.message).toContain(server.url());
    expect(error.message).toContain(`has md5 ${md5}, expected ${wrong}`);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.part`)).toBe(false);
  });

  it('explains where to put the file when the server cannot be reached', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const url = `http://127.0.0.1:${port}/vgg16_notop.h5`;
    const error = await downloadError(downloadFile({ url, dest, md5 }));
    expect(error.message).toContain(`could not download vgg16_notop.h5 from ${url} (connect ECONNREFUSED`);
    expect(error.message).toContain(`put it at ${dest} (md5 ${md5}), or pass --weights PATH`);
    expect(error.url).toBe(url);
    expect(error.dest).toBe(dest);
    expect(existsSync(dest)).toBe(false);
  });

  it('stops a progress reporter whether the download succeeds or fails', async () => {
    let stops = 0;
    const reporter = Object.assign(() => {}, { stop: () => void stops++ });
    await downloadFile({ url: server.url(), dest, md5, onProgress: reporter });
    await downloadError(downloadFile({ url: server.url('missing.bin'), dest, md5, onProgress: reporter }));
    expect(stops).toBe(2);
  });

  it('reports HTTP errors with the same advice', async () => {
    const error = await downloadError(downloadFile({ url: server.url('missing.bin'), dest, md5 }));
    expect(error.message).toMatch(/\(HTTP 404 Not Found\)\. Download it on a machine with network access/);
    expect(error.message).toContain(dest);
  });

  it('keeps the part when the connection ends before expectedBytes', async () => {
    server.reset({ cutFirst: true });
    const error = await downloadError(downloadFile({ url: server.url(), dest, md5, expectedBytes: content.length }));
    expect(error.message).toContain(`${dest}.part`);
    expect(existsSync(`${dest}.part`)).toBe(true);
  });
});

describe('progressBarReporter', () => {
  it('prints nothing when stderr is not a terminal', () => {
    const out = new PassThrough();
    const report = progressBarReporter('file.h5', Object.assign(out, { isTTY: false }) as unknown as NodeJS.WriteStream);
    report(10, 100);
    report(100, 100);
    expect(out.read()).toBeNull();
  });

  it('draws bytes, speed and ETA on a terminal', () => {
    const out = new PassThrough();
    const tty = Object.assign(out, {
      isTTY: true,
      columns: 120,
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
    }) as unknown as NodeJS.WriteStream;
    const report = progressBarReporter('file.h5', tty);
    report(0, 2e6);
    report(2e6, 2e6);
    const text = String(out.read());
    expect(text).toContain('file.h5');
    expect(text).toMatch(/2\.0\/2\.0 MB \| [\d.]+ MB\/s \| ETA/);
  });
});
