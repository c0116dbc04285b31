import { createRequire } from 'node:module';

/** Whether an (optional) package is installed, without loading it. */
export function isInstalled(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}
