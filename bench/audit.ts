/**
 * bench/audit: how long audit's searches take on many codes, and the memory they need.
 *
 *   npm run bench:audit                                   # 20,000 and 100,000 codes at 512-d and 2048-d
 *   npm run bench:audit -- --sizes 20000 --dims 512 --near-only
 *
 * Codes are generated (ReLU-like: non-negative, sparse, seeded), with 1% of rows a noisy copy
 * of another row so that pairs exist. Each size runs in a fresh child process, so its peak RSS
 * (getrusage's maxrss) is its own: the codes themselves (n × d × 4 bytes) plus what the stage
 * adds. Timed: near-duplicates (similarity vectors, then exact 10-NN by blocked Gemm + TopK on
 * onnxruntime, pairs above the threshold) and, unless --near-only, the 5-fold out-of-fold
 * logistic-regression heads (audit's defaults) and confident learning on 10 generated classes.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { confidentLearning } from '../src/audit/confident-learning.ts';
import { assignFolds } from '../src/audit/folds.ts';
import { findNearDuplicates } from '../src/audit/near-duplicates.ts';
import { DEFAULT_OUT_OF_FOLD, outOfFoldProbabilities } from '../src/audit/out-of-fold.ts';
import { mulberry32 } from '../src/util/numbers.ts';
import { benchArgs } from './args.ts';

const { values: args } = benchArgs({
  options: {
    sizes: { type: 'string', default: '20000,100000' },
    dims: { type: 'string', default: '512,2048' },
    'near-only': { type: 'boolean', default: false },
    one: { type: 'string' },
  },
});

interface Result {
  n: number;
  dim: number;
  codesMB: number;
  nearSeconds: number;
  pairs: number;
  labelSeconds: number | null;
  peakMB: number;
}

/** n × dim ReLU-like codes; every 100th row is a noisy copy of the row before it. */
function generate(n: number, dim: number): Float32Array {
  const random = mulberry32(n ^ dim);
  const codes = new Float32Array(n * dim);
  for (let r = 0; r < n; r++) {
    const base = r * dim;
    if (r % 100 === 99) {
      for (let d = 0; d < dim; d++) codes[base + d] = Math.max(0, codes[base - dim + d] * (1 + 0.05 * (random() - 0.5)));
      continue;
    }
    for (let d = 0; d < dim; d++) codes[base + d] = random() < 0.6 ? 0 : random() * random() * 4;
  }
  return codes;
}

async function one(n: number, dim: number): Promise<Result> {
  const codes = generate(n, dim);
  const sha256 = Array.from({ length: n }, (_, i) => i.toString(16).padStart(64, '0'));
  const labels = Array.from({ length: n }, (_, i) => `c${i % 10}`);
  const rows = { n, dim, codes, sha256, paths: sha256, labels, splits: labels.map(() => 'train' as const) };
  let started = performance.now();
  const near = await findNearDuplicates(rows, { threshold: 0.947, k: 10 });
  const nearSeconds = (performance.now() - started) / 1000;
  let labelSeconds: number | null = null;
  if (!args['near-only']) {
    started = performance.now();
    const y = Int32Array.from(labels, (l) => Number(l.slice(1)));
    const folds = assignFolds(rows, near.groupOfRow, 5, 0);
    const oof = await outOfFoldProbabilities(codes, dim, y, folds, 10, 5, DEFAULT_OUT_OF_FOLD);
    confidentLearning(oof.probabilities, y, 10);
    labelSeconds = (performance.now() - started) / 1000;
  }
  return { n, dim, codesMB: (n * dim * 4) / 2 ** 20, nearSeconds, pairs: near.pairs.length, labelSeconds, peakMB: process.resourceUsage().maxRSS / 1024 };
}

if (args.one) {
  const [n, dim] = args.one.split('x').map(Number);
  console.log(JSON.stringify(await one(n, dim)));
} else {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const flags = execFileSync('sh', ['-c', "grep -m1 '^flags' /proc/cpuinfo || true"], { encoding: 'utf8' })
    .replace(/^flags\s*:\s*/, '')
    .split(/\s+/)
    .filter((f) => /^(avx|fma|sse4|f16c|amx)/.test(f))
    .join(' ');
  console.log(`CPU: ${cpu}, ${os.availableParallelism()} cores; ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; flags: ${flags || 'n/a'}`);
  console.log(`Node ${process.version}, onnxruntime-node, load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  console.log(`| codes | dim | codes in memory | near-duplicates (exact 10-NN) | pairs found |${args['near-only'] ? '' : ' label errors (5 folds) |'} peak RSS |`);
  console.log(`|---|---|---|---|---|${args['near-only'] ? '' : '---|'}---|`);
  for (const n of args.sizes!.split(',').map(Number)) {
    for (const dim of args.dims!.split(',').map(Number)) {
      const out = execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--one', `${n}x${dim}`, ...(args['near-only'] ? ['--near-only'] : [])], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as Result;
      console.log(
        `| ${r.n.toLocaleString('en')} | ${r.dim} | ${r.codesMB.toFixed(0)} MB | ${r.nearSeconds.toFixed(1)} s | ${r.pairs} |` +
          `${r.labelSeconds === null ? '' : ` ${r.labelSeconds.toFixed(1)} s |`} ${r.peakMB.toFixed(0)} MB |`,
      );
    }
  }
}
