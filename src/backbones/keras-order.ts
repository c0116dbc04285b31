/**
 * The order Keras lists a functional model's layers in (model.layers, to_json, and the
 * layer_names of the h5 files it saves), which is the order Keras' load_weights assigns an h5
 * file's weights by. It is not the order the model was built in: Keras' Functional.map_graph
 * walks the graph depth-first from the output, gives each layer the longest distance to the
 * output as its depth, and lists layers by decreasing depth, ties in the order the walk first
 * met them. Ported here so that files bottleneck writes load into Keras as Keras' own do.
 */
import { resolveLayer, type LayerGraph, type LayerNode } from './layer-graph.ts';

export function kerasLayerOrder(graph: LayerGraph, output: string): LayerNode[] {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const firstSeen = new Map<string, number>();
  const finished: string[] = [];
  const done = new Set<string>();
  // Depth-first from the output, iteratively: a node is finished after all its inputs.
  const stack: { name: string; next: number }[] = [{ name: resolveLayer(graph, output).name, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (!firstSeen.has(top.name)) firstSeen.set(top.name, firstSeen.size);
    const inputs = byName.get(top.name)!.inputs;
    if (top.next < inputs.length) {
      const input = inputs[top.next++];
      if (!done.has(input)) stack.push({ name: input, next: 0 });
      continue;
    }
    stack.pop();
    if (!done.has(top.name)) {
      done.add(top.name);
      finished.push(top.name);
    }
  }
  const depth = new Map<string, number>();
  for (const name of [...finished].reverse()) {
    const d = depth.get(name) ?? 0;
    depth.set(name, d);
    for (const input of byName.get(name)!.inputs) depth.set(input, Math.max(d + 1, depth.get(input) ?? 0));
  }
  return [...depth.keys()]
    .sort((a, b) => depth.get(b)! - depth.get(a)! || firstSeen.get(a)! - firstSeen.get(b)!)
    .map((name) => byName.get(name)!);
}
