import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Forward passes of real CNNs on 2 cores take seconds, not milliseconds.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // One engine per worker already uses every core; running files in parallel only thrashes.
    fileParallelism: false,
  },
});
