/**
 * A contact sheet of audit's top suspected label errors, for the README:
 *
 *   bottleneck audit DATA --json > audit.json
 *   node --import tsx bench/audit-contact-sheet.ts audit.json docs/audit-top20.jpg [--top 20]
 */
import { readFile } from 'node:fs/promises';
import sharp, { type OverlayOptions } from 'sharp';
import { benchArgs } from './args.ts';

const { values, positionals } = benchArgs({ allowPositionals: true, options: { top: { type: 'string', default: '20' }, size: { type: 'string', default: '180' } } });
const [input, output] = positionals;
if (!input || !output) throw new Error('usage: audit-contact-sheet.ts AUDIT.json OUT.jpg [--top N]');
const audit = JSON.parse(await readFile(input, 'utf8')) as { labels: { issues: { member: { path: string; file: string | null }; given: string; suggested: string; selfConfidence: number }[] } };
const issues = audit.labels.issues.slice(0, Number(values.top));
const S = Number(values.size);
const cols = 5;
const caption = 34;
const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
const tiles: OverlayOptions[] = [];
for (const [i, issue] of issues.entries()) {
  const left = (i % cols) * (S + 8);
  const top = Math.floor(i / cols) * (S + caption + 8);
  if (issue.member.file) tiles.push({ input: await sharp(issue.member.file).rotate().resize(S, S, { fit: 'contain', background: '#fff' }).toBuffer(), left, top: top + caption });
  const text = `<text x="2" y="13" font-size="12" font-family="sans-serif">${i + 1}. ${esc(issue.member.path.split('/').at(-1)!)}</text><text x="2" y="29" font-size="12" font-family="sans-serif" fill="#b00">${esc(issue.given)} → ${esc(issue.suggested)} (p ${issue.selfConfidence.toFixed(3)})</text>`;
  tiles.push({ input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${caption}">${text}</svg>`), left, top });
}
const sheet = await sharp({ create: { width: cols * (S + 8), height: Math.ceil(issues.length / cols) * (S + caption + 8), channels: 3, background: '#fff' } })
  .composite(tiles)
  .png()
  .toBuffer();
await sharp(sheet).jpeg({ quality: 72, mozjpeg: true }).toFile(output);
console.log(output);
