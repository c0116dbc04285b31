/**
 * Files the package ships beside its code (`assets/`: the built-in squeezenet1_1 weights, the
 * audit's calibrations). Found from this module's own location, which is `src/util/` in a
 * checkout and `dist/util/` in the installed package: the same depth below the package root.
 */
import { fileURLToPath } from 'node:url';

export function assetPath(...parts: string[]): string {
  return fileURLToPath(new URL(`../../assets/${parts.join('/')}`, import.meta.url));
}
