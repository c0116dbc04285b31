/**
 * `train-head DATA --backbone …`: the user names the images and the extract options, as they
 * ran extract, and train-head finds the key extract wrote, exactly as extract resolves it.
 * Codes that are missing, or a folder that has changed since its last extract, are one line
 * that says which extract command to run: train-head never extracts behind the user's back.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cutLabel } from '../backbones/cut.ts';
import { extractHint } from '../cache/extract-hint.ts';
import { readMembership } from '../cache/membership.ts';
import { loadDataset } from '../extract/dataset.ts';
import { codeSpecFor } from '../extract/extract-targets.ts';
import { planExtract, type ExtractSettingsFlags } from '../extract/extract-plan.ts';
import { cacheKey } from '../cache/code-spec.ts';
import { UsageError } from '../util/errors.ts';

/** Whether `codes` names a cache key (its folder, or a key under cacheRoot) rather than images. */
export function isKeyReference(codes: string, cacheRoot: string): boolean {
  return existsSync(path.join(codes, 'spec.json')) || existsSync(path.join(cacheRoot, codes, 'spec.json'));
}

export async function codesOfDataset(data: string, flags: ExtractSettingsFlags & { readonly name?: string }, cacheRoot: string): Promise<{ readonly keyDir: string; readonly dataset: string }> {
  const dataset = await loadDataset(data);
  const plan = await planExtract(flags);
  if (plan.cuts.length > 1) throw new UsageError(`--layer ${flags.layer}: a head trains on one cut; name one layer (sweep compares several)`);
  const spec = codeSpecFor({ ...plan, cut: plan.cuts[0] });
  const key = cacheKey(spec);
  const name = flags.name ?? dataset.name;
  const run = `run \`${extractHint(spec, data)}${flags.name ? ` --name ${flags.name}` : ''} --cache ${cacheRoot}\``;
  const what = `${spec.backbone} ${cutLabel(plan.cuts[0])}`;
  if (!existsSync(path.join(cacheRoot, key, 'spec.json'))) throw new UsageError(`${data}: no ${what} codes in ${cacheRoot} yet: ${run}`);
  const membership = await readMembership(cacheRoot, name).catch(() => null);
  if (!membership) throw new UsageError(`${data}: no complete extract of dataset '${name}' in ${cacheRoot}: ${run}`);
  // A cheap check by path: new or deleted images mean the codes describe an older folder.
  const listed = new Set(membership.members.map((m) => m.path));
  const now = new Set(dataset.items.map((i) => i.path));
  const added = [...now].filter((p) => !listed.has(p)).length;
  const gone = [...listed].filter((p) => !now.has(p)).length;
  if (added + gone > 0) throw new UsageError(`${data} has changed since it was last extracted (${added} new, ${gone} gone): ${run}`);
  return { keyDir: path.join(cacheRoot, key), dataset: name };
}
