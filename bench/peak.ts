/**
 * How far an engine is from the machine: multiply-accumulates per image (from the planned
 * graph), and the CPU's peak rate from its cores, clock and vector units. The peak assumes two
 * FMA (or VNNI) ports per core, as Xeon Gold/Platinum and Zen 4 have; a CPU with one is at half.
 * The clock is /proc/cpuinfo's, which in a VM is often the nominal one: a core that boosts
 * above it can pass the peak computed here.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { GraphPlan } from '../src/backbones/graph-plan.ts';
import { cpuFlags } from '../src/util/cpu-flags.ts';

/** Multiply-accumulates per image of the convs and dense layers (what the engine's time goes to). */
export function macsPerImage(plan: GraphPlan): number {
  let macs = 0;
  for (const step of plan.steps) {
    const n = step.node;
    const [h, w, c] = step.outShape;
    if (n.op === 'conv2d') macs += h! * w! * c! * n.kernel[0] * n.kernel[1] * (step.inShape[2]! / (n.groups ?? 1));
    else if (n.op === 'separable_conv2d') macs += h! * w! * (step.inShape[2]! * n.kernel[0] * n.kernel[1] + step.inShape[2]! * c!);
    else if (n.op === 'dense') macs += step.inShape.reduce((a, b) => a * b, 1) * step.outShape[step.outShape.length - 1]!;
  }
  return macs;
}

/**
 * fp32 lanes each port works on per cycle. Zen 4 (AMD family 25 with AVX-512) decodes AVX-512
 * but runs each 512-bit instruction as two 256-bit halves, so it does AVX2's work per cycle;
 * Zen 5 (family 26) and Intel have full 512-bit units.
 */
function lanesPerCycle(flags: readonly string[]): number {
  if (!flags.includes('avx512f')) return flags.includes('avx2') ? 8 : 4;
  return amdFamily() === 25 ? 8 : 16;
}

function amdFamily(): number | undefined {
  const info = cpuinfo();
  if (!/vendor_id\s*:\s*AuthenticAMD/.test(info)) return undefined;
  const family = info.match(/cpu family\s*:\s*(\d+)/);
  return family ? Number(family[1]) : undefined;
}

function clockGhz(): number {
  const mhz = cpuinfo().match(/cpu MHz\s*:\s*([\d.]+)/);
  return mhz ? Number(mhz[1]) / 1000 : (os.cpus()[0]?.speed ?? 0) / 1000;
}

/** /proc/cpuinfo, or '' off Linux. */
function cpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/** Peak operations per second (a MAC is 2 operations) for fp32 and int8, and how they were counted. */
export function peak(): { fp32: number; int8: number; how: string } {
  const flags = cpuFlags();
  const cores = os.availableParallelism();
  const ghz = clockGhz();
  const lanes = lanesPerCycle(flags);
  const halves = flags.includes('avx512f') && lanes === 8;
  const fp32PerCycle = 2 * 2 * lanes; // 2 ports × FMA (2 ops) × lanes
  // VNNI: 4 int8 MACs per 32-bit lane per instruction; AMX: 1024 int8 MACs per cycle per core; AVX2 without VNNI: about half of VNNI's rate.
  const int8PerCycle = flags.includes('amx_int8') ? 2 * 1024 : flags.includes('avx512_vnni') || flags.includes('avx_vnni') ? 2 * 2 * 4 * lanes : 2 * 4 * lanes;
  return { fp32: cores * ghz * 1e9 * fp32PerCycle, int8: cores * ghz * 1e9 * int8PerCycle, how: `${cores} cores × ${ghz.toFixed(2)} GHz × (${fp32PerCycle} fp32 FLOP, ${int8PerCycle} int8 OP per cycle; 2 ports assumed${halves ? ', 512-bit ops as two 256-bit halves (Zen 4)' : ''})` };
}
