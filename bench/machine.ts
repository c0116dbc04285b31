/**
 * The machine a benchmark ran on, for the top of its table: these machines differ (AMD EPYC with
 * AVX2 or AVX-512, Intel Xeon with VNNI and AMX), and a number means little without it.
 */
import os from 'node:os';
import { cpuFlags } from '../src/util/cpu-flags.ts';

export { cpuFlags };

export function machineLine(): string {
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return `machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores, flags ${cpuFlags().join(' ') || 'unknown'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, load ${load}`;
}
