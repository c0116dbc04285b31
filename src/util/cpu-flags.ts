/**
 * The CPU's vector and matrix extensions that decide kernel speed (from /proc/cpuinfo; none
 * elsewhere): what --precision auto and the benchmarks' machine line read.
 */
import { readFileSync } from 'node:fs';

const FLAGS = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_int8', 'amx_bf16'] as const;
export type CpuFlag = (typeof FLAGS)[number];

export function cpuFlags(): CpuFlag[] {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
    const have = new Set(line.split(':')[1]?.trim().split(/\s+/));
    return FLAGS.filter((f) => have.has(f));
  } catch {
    return [];
  }
}
