/**
 * How extract shows progress: a live bar with images/s and an ETA on a TTY, JSON lines with
 * `--json` (for logs and other programs), nothing otherwise.
 */
import { isLiveTerminal } from '../util/terminal.ts';
import cliProgress from 'cli-progress';
import type { ExtractProgress } from './run-extract.ts';

export interface ProgressSink {
  update(p: ExtractProgress): void;
  stop(): void;
}

export function progressSink(mode: 'bar' | 'json' | 'none', stream: NodeJS.WriteStream = process.stderr): ProgressSink {
  if (mode === 'json') {
    let last = 0;
    return {
      // A line every second at most: enough for a log, not a flood.
      update(p) {
        const now = Date.now();
        if (now - last < 1000 && p.done < p.total) return;
        last = now;
        process.stdout.write(`${JSON.stringify({ event: 'progress', ...p, imgPerSec: rate(p) })}\n`);
      },
      stop() {},
    };
  }
  if (mode === 'none' || !isLiveTerminal(stream)) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: 'extract |{bar}| {value}/{total} images | {rate} img/s | new {computed} reused {reused} failed {failed} | ETA {eta_formatted}',
      hideCursor: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      const payload = { rate: rate(p).toFixed(1), computed: p.computed, reused: p.reused, failed: p.failed };
      if (!started) {
        bar.start(p.total, p.done, payload);
        started = true;
      } else bar.update(p.done, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function rate(p: ExtractProgress): number {
  return p.seconds > 0 ? p.computed / p.seconds : 0;
}
