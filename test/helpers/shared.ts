/**
 * ../shared holds real weights and images that users' machines do not have. Tests that need
 * it skip, saying so, when it is absent.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED = path.resolve(REPO_ROOT, '..', 'shared');
export const SHARED_MODELS = path.join(SHARED, 'models');
export const SHARED_DATASETS = path.join(SHARED, 'datasets');

export const hasSharedModels = existsSync(SHARED_MODELS);
export const hasSharedDatasets = existsSync(SHARED_DATASETS);

/** Appended to test titles, so a skip explains itself in the report. */
export const NEEDS_SHARED_MODELS = hasSharedModels ? '' : ' [skipped: ../shared/models is absent]';
export const NEEDS_SHARED_DATASETS = hasSharedDatasets ? '' : ' [skipped: ../shared/datasets is absent]';
