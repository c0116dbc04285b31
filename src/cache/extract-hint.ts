/** The `bottleneck extract` command that fills a key, for messages that tell the user what to run. */
import type { CodeSpec } from './code-spec.ts';

export function extractHint(spec: CodeSpec, source: string): string {
  const p = spec.preprocessing;
  const quote = (s: string) => (/^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const flags = [
    `--backbone ${quote(spec.backbone)}`,
    `--layer ${quote(spec.layer)}`,
    spec.pool ? `--pool ${spec.pool}` : '',
    `--size ${p.size[0]}x${p.size[1]}`,
    p.resize !== 'squash' ? `--resize ${p.resize}` : '',
    p.interpolation !== 'linear' ? `--interpolation ${p.interpolation}` : '',
    p.background.join(',') !== '255,255,255' ? `--background ${p.background.join(',')}` : '',
    spec.dtype === 'float16' ? '--float16' : '',
    spec.precision ? `--precision ${spec.precision}` : '',
    spec.augment ? `--augment ${spec.augment.views} --augment-seed ${spec.augment.seed}` : '',
  ];
  return ['bottleneck extract', quote(source), ...flags].filter(Boolean).join(' ');
}
