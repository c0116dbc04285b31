/** The extract settings most tests use; each test overrides what it is about. */
import type { ExtractOptions } from '../../src/extract/run-extract.ts';

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
