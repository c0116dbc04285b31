/**
 * `--unfreeze BLOCK`: which layers fine-tuning trains, and where the frozen part stops.
 *
 * A block is the nodes named `BLOCK_…` or `BLOCK/…` (or BLOCK itself): vgg16's `block5`
 * (block5_conv1..3, block5_pool), squeezenet's `fire9`, googlenet's `inception_5b`. The frozen
 * cut is the input of the block's first node (block4_pool, fire8/concat, inception_5a/output):
 * its output is cached once and never recomputed. The block, and any layer between it and the
 * head's cut, are trained; everything below the frozen cut stays as it is.
 */
import { planGraph } from '../backbones/graph-plan.ts';
import { isTrainable, resolveLayer, type LayerGraph, type Pair } from '../backbones/layer-graph.ts';
import { UsageError } from '../util/errors.ts';

export interface UnfreezePlan {
  /** The block's name, as given or chosen by default. */
  readonly block: string;
  /** The node whose output is cached and fed to the trained layers. */
  readonly frozenCut: string;
  /** The head's cut (resolved node name). */
  readonly headCut: string;
  /** Every node from just above the frozen cut to the head's cut, in topological order: all trained. */
  readonly nodes: readonly string[];
  /** The nodes of the named block. */
  readonly blockNodes: readonly string[];
  /** The nodes among `nodes` whose weights are trained (batch norm's statistics stay frozen). */
  readonly weighted: readonly string[];
}

/**
 * A node's block: the part before its first '/' (fire9/squeeze1x1, inception_5b/output); else
 * the name up to its first number and a letter after it (block5_conv1 → block5, block_16_expand
 * → block_16, block7a_project_conv → block7a, conv5_block3_out → conv5, Conv_1_bn → Conv_1);
 * else the part before its first '_'; else its name.
 */
export function blockOf(node: string): string {
  const slash = node.indexOf('/');
  if (slash > 0) return node.slice(0, slash);
  const numbered = /^([A-Za-z_]*?\d+[a-z]?)(?=_|$)/.exec(node);
  if (numbered) return numbered[1];
  const underscore = node.indexOf('_');
  return underscore > 0 ? node.slice(0, underscore) : node;
}

function inBlock(node: string, block: string): boolean {
  return node === block || node.startsWith(`${block}_`) || node.startsWith(`${block}/`);
}

/**
 * Resolves `--unfreeze` (default: the block of the last weighted layer at or below the head's
 * cut) against the head's cut, refusing in one line a block that is unknown, not wholly below
 * the cut, without weights, or fed from below its frozen cut by anything but its input.
 */
export function resolveUnfreeze(graph: LayerGraph, inputSize: Pair, headLayer: string, unfreeze?: string): UnfreezePlan {
  const headCut = resolveLayer(graph, headLayer).name;
  const plan = planGraph(graph, inputSize, [headCut]);
  const order = plan.steps.map((s) => s.node.name);
  const position = new Map(order.map((name, i) => [name, i]));
  const weightedBlocks = [...new Set(plan.steps.filter((s) => isTrainable(s.node)).map((s) => blockOf(s.node.name)))];
  const listed = () => (weightedBlocks.length > 8 ? `…, ${weightedBlocks.slice(-8).join(', ')}` : weightedBlocks.join(', '));

  const block = unfreeze ?? weightedBlocks.at(-1);
  if (!block) throw new UsageError(`${graph.name}: no layer with weights below the head's cut ${headCut}: nothing to fine-tune`);
  const flag = `--unfreeze ${block}`;
  const blockNodes = graph.nodes.filter((n) => inBlock(n.name, block));
  if (blockNodes.length === 0) {
    throw new UsageError(`${flag}: ${graph.name} has no block '${block}' (blocks below the head's cut ${headCut}: ${listed()})`);
  }
  const above = blockNodes.filter((n) => !position.has(n.name));
  if (above.length > 0) {
    throw new UsageError(
      `${flag}: the block is not wholly below the head's cut ${headCut} (${above.map((n) => n.name).slice(0, 3).join(', ')}${above.length > 3 ? ', …' : ''} ${above.length === 1 ? 'is' : 'are'} not on its path)`,
    );
  }
  const first = blockNodes.reduce((a, b) => (position.get(b.name)! < position.get(a.name)! ? b : a));
  if (first.op === 'input' || first.inputs.length !== 1) {
    throw new UsageError(`${flag}: the block's first layer ${first.name} ${first.op === 'input' ? 'is the input' : `reads ${first.inputs.length} inputs`}, so there is no single frozen cut below it`);
  }
  const frozenCut = first.inputs[0];
  const nodes = order.slice(position.get(frozenCut)! + 1);
  const trained = new Set(nodes);
  for (const name of nodes) {
    const node = graph.nodes.find((n) => n.name === name)!;
    const outside = node.inputs.find((i) => i !== frozenCut && !trained.has(i));
    if (outside !== undefined) {
      throw new UsageError(`${flag}: layer ${name} reads ${outside}, which is below the frozen cut ${frozenCut}; the layers from ${frozenCut} up to ${headCut} must read only its output`);
    }
  }
  const weighted = nodes.filter((name) => isTrainable(graph.nodes.find((n) => n.name === name)!));
  if (!blockNodes.some((n) => isTrainable(n))) throw new UsageError(`${flag}: the block has no layer with weights to train`);
  return { block, frozenCut, headCut, nodes, blockNodes: blockNodes.map((n) => n.name), weighted };
}
