// Development aid: prints the first differences between a zoo graph and Keras' own (by node name).
import { readFileSync } from 'node:fs';
import { graphFromKerasTopology } from '../../src/backbones/keras-topology.ts';
const [name, mod, fn, arg] = process.argv.slice(2);
const m = await import(`../../src/backbones/zoo/${mod}.ts`);
const ours = arg ? m[fn](arg) : m[fn]();
const { graph } = graphFromKerasTopology(JSON.parse(readFileSync(`test/reference/keras/${name}.layers.json`, 'utf8')));
const sorted = (o: unknown) => JSON.stringify(o, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v));
const keras = new Map(graph.nodes.map((n) => [n.name, n]));
let bad = 0;
for (const node of ours.nodes) {
  const k = keras.get(node.name);
  if (!k || sorted(k) !== sorted(node)) { console.log('ours ', sorted(node), '\nkeras', k ? sorted(k) : '(none)'); if (++bad > 3) break; }
}
const mine = new Set(ours.nodes.map((n: { name: string }) => n.name));
const missing = graph.nodes.filter((n) => !mine.has(n.name)).map((n) => n.name);
console.log(name, 'ours', ours.nodes.length, 'keras', graph.nodes.length, 'missing', missing.slice(0, 5), bad ? 'DIFF' : 'SAME');
