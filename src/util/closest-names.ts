/**
 * The known names nearest to a mistyped one, for "did you mean" in errors. ONNX tensor names
 * are long paths (`/blocks/blocks.11/norm1/LayerNormalization_output_0`), so names containing the
 * typed text come first, then the rest by edit distance. Hand-written: a dozen lines, and no
 * library here does it.
 */
export function closestNames(typed: string, known: readonly string[], count = 3): string[] {
  const lower = typed.toLowerCase();
  const score = (name: string) => (name.toLowerCase().includes(lower) ? -1 / name.length : editDistance(lower, name.toLowerCase()));
  return [...new Set(known)].map((name) => ({ name, s: score(name) })).sort((a, b) => a.s - b.s).slice(0, count).map((x) => x.name);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
}
