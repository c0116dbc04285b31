/**
 * The codes a head trains on, as an n × dim float32 matrix that is either in memory or in a
 * scratch file read row by row (`train-head --max-memory`): the training loop only ever asks
 * for the rows of one batch, so codes larger than memory train in the same order, with the
 * same batches and the same result, at the cost of reading them from disk (or the page cache).
 */
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { asFileSystemError } from '../util/errors.ts';
import type { Standardizer } from './standardize.ts';

export interface CodeMatrix {
  readonly n: number;
  readonly dim: number;
  /** Copies rows `rows` into `out`, starting at row `at` of `out`. */
  gather(rows: ArrayLike<number>, out: Float32Array, at: number): void;
  /** Rows [start, start + count): a view when in memory, else a fresh array. */
  range(start: number, count: number): Float32Array;
}

export function memoryMatrix(x: Float32Array, n: number, dim: number): CodeMatrix {
  return {
    n,
    dim,
    gather(rows, out, at) {
      for (let i = 0; i < rows.length; i++) out.set(x.subarray(rows[i] * dim, (rows[i] + 1) * dim), (at + i) * dim);
    },
    range: (start, count) => x.subarray(start * dim, (start + count) * dim),
  };
}

/**
 * A matrix in a scratch file: filled once with `write`, then read with positioned reads. The
 * file is deleted by `dispose` (and never outlives the process's scratch folder).
 */
export class FileMatrix implements CodeMatrix {
  private readonly fd: number;
  private readonly rowBytes: number;

  constructor(
    readonly file: string,
    readonly n: number,
    readonly dim: number,
  ) {
    try {
      this.fd = openSync(file, 'w+');
    } catch (err) {
      throw asFileSystemError(file, err);
    }
    this.rowBytes = dim * 4;
  }

  /** Stores `code` (dim floats) as row `row`. A full disk is a DiskFullError naming the file. */
  write(row: number, code: Float32Array): void {
    const bytes = new Uint8Array(code.buffer, code.byteOffset, this.rowBytes);
    let done = 0;
    try {
      while (done < this.rowBytes) done += writeSync(this.fd, bytes, done, this.rowBytes - done, row * this.rowBytes + done);
    } catch (err) {
      throw asFileSystemError(this.file, err);
    }
  }

  gather(rows: ArrayLike<number>, out: Float32Array, at: number): void {
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < rows.length; i++) this.readInto(bytes, (at + i) * this.rowBytes, rows[i] * this.rowBytes, this.rowBytes);
  }

  range(start: number, count: number): Float32Array {
    const out = new Float32Array(count * this.dim);
    this.readInto(new Uint8Array(out.buffer), 0, start * this.rowBytes, count * this.rowBytes);
    return out;
  }

  dispose(): void {
    closeSync(this.fd);
    rmSync(this.file, { force: true });
  }

  private readInto(bytes: Uint8Array, offset: number, position: number, length: number): void {
    let done = 0;
    while (done < length) {
      const got = readSync(this.fd, bytes, offset + done, length - done, position + done);
      if (got === 0) throw new Error(`${this.file}: unexpected end of scratch file`);
      done += got;
    }
  }
}

/** The same matrix, standardised as it is read: (x − μ) / σ per feature. */
export function standardizedMatrix(base: CodeMatrix, s: Standardizer): CodeMatrix {
  const { dim } = base;
  const apply = (out: Float32Array, from: number, rows: number) => {
    for (let i = from; i < from + rows; i++) {
      for (let d = 0; d < dim; d++) out[i * dim + d] = (out[i * dim + d] - s.mean[d]) / s.std[d];
    }
    return out;
  };
  return {
    n: base.n,
    dim,
    gather(rows, out, at) {
      base.gather(rows, out, at);
      apply(out, at, rows.length);
    },
    range: (start, count) => apply(Float32Array.from(base.range(start, count)), 0, count),
  };
}

/** `a`'s rows followed by `b`'s, without copying either. */
export function concatMatrices(a: CodeMatrix, b: CodeMatrix): CodeMatrix {
  const { dim } = a;
  return {
    n: a.n + b.n,
    dim,
    gather(rows, out, at) {
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i];
        if (r < a.n) a.gather([r], out, at + i);
        else b.gather([r - a.n], out, at + i);
      }
    },
    range(start, count) {
      const out = new Float32Array(count * dim);
      this.gather(Int32Array.from({ length: count }, (_, i) => start + i), out, 0);
      return out;
    },
  };
}
