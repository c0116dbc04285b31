/**
 * The machine a benchmark ran on, for the top of its table: these machines differ (AMD EPYC with
 * AVX2 or AVX-512, Intel Xeon with VNNI and AMX), and a number means little without it.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** The vector and matrix extensions that decide CPU kernel speed. */
const FLAGS = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_int8', 'amx_bf16'];

export function cpuFlags(): string[] {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
    const have = new Set(line.split(':')[1]?.trim().split(/\s+/));
    return FLAGS.filter((f) => have.has(f));
  } catch {
    return [];
  }
}

export function machineLine(): string {
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return `machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores, flags ${cpuFlags().join(' ') || 'unknown'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, load ${load}`;
}
