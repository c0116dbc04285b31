/**
 * What `bottleneck backbones` lists: every zoo backbone with its input size, preprocessing,
 * default and named cuts, and where its weights are (or what to fetch). The keras.applications
 * ones are described from their specs without reading their (large) weight files.
 */
import { cutLabel } from './cut.ts';
import type { Pair } from './layer-graph.ts';
import { KERAS_APPLICATIONS, isKerasApplication, type KerasApplication } from './zoo/keras-applications.ts';
import { loadBackbone, locateKerasWeights, ZOO_NAMES, type LoadBackboneOptions } from './zoo.ts';

export interface BackboneEntry {
  readonly name: string;
  readonly input?: Pair;
  /** Keras' preprocess_input mode, or a description of the mean / std. */
  readonly preprocessing?: string;
  readonly defaultCut?: string;
  readonly namedCuts?: readonly string[];
  /** The weights file in use, or why there is none yet. */
  readonly weights: string;
  readonly ready: boolean;
}

export async function describeZoo(opts: Pick<LoadBackboneOptions, 'weightsDir'> = {}): Promise<BackboneEntry[]> {
  const entries: BackboneEntry[] = [];
  for (const name of ZOO_NAMES) {
    if (isKerasApplication(name)) {
      const spec: KerasApplication = KERAS_APPLICATIONS[name];
      const found = locateKerasWeights(name, false, opts);
      entries.push({
        name,
        input: spec.size,
        preprocessing: `keras '${spec.mode}'`,
        defaultCut: cutLabel(spec.defaultCut),
        namedCuts: spec.namedCuts,
        weights: found ?? `not found (downloaded on first use: ${spec.notop.file}${spec.notop.md5 ? `, md5 ${spec.notop.md5}` : ', unchecked'})`,
        ready: found !== undefined,
      });
      continue;
    }
    try {
      const b = await loadBackbone(name, { ...opts, download: false });
      const p = b.preprocessing;
      entries.push({
        name,
        input: p.size,
        preprocessing: `${p.channels}, mean ${p.mean.map((m) => +m.toFixed(3)).join('/')}, std ${p.std.map((s) => +s.toFixed(3)).join('/')}`,
        defaultCut: cutLabel(b.defaultCut),
        namedCuts: b.namedCuts,
        weights: b.weightsFrom,
        ready: true,
      });
    } catch (error) {
      entries.push({ name, weights: error instanceof Error ? error.message : String(error), ready: false });
    }
  }
  return entries;
}
