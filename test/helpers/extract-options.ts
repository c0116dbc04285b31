/** The extract settings most tests use; each test overrides what it is about. */
import { tinyRandomBackbone } from '../../src/backbones/zoo/tiny-random.ts';
import { loadDataset } from '../../src/extract/dataset.ts';
import { runExtract, type ExtractOptions, type ExtractSummary } from '../../src/extract/run-extract.ts';

export const TEST_EXTRACT_DEFAULTS = {
  resize: 'squash',
  interpolation: 'linear',
  background: [255, 255, 255],
  dtype: 'float32',
  batch: 8,
  concurrency: 2,
  engine: 'onnx',
  device: 'cpu',
} as const satisfies Partial<ExtractOptions>;

/** Extracts a folder with the tiny backbone (block2_pool, average-pooled unless `overrides` say otherwise). */
export async function extractWithTinyBackbone(data: string, cacheRoot: string, overrides: Partial<ExtractOptions> = {}): Promise<ExtractSummary> {
  const dataset = await loadDataset(data);
  return runExtract({
    items: dataset.items,
    dataset,
    backbone: tinyRandomBackbone(),
    cut: { layer: 'block2_pool', pool: 'avg' },
    ...TEST_EXTRACT_DEFAULTS,
    cacheRoot,
    ...overrides,
  });
}
