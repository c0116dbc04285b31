const n = 1 << 20;
const w = new Float32Array(n), m = new Float32Array(n), v = new Float32Array(n), g = new Float32Array(n);
for (let i = 0; i < n; i++) g[i] = Math.random() - 0.5;
function adam(w, m, v, g, b1, b2k, lr, eps) {
  for (let i = 0; i < w.length; i++) {
    const gi = g[i];
    const mi = b1 * m[i] + gi; m[i] = mi;
    const vi = 0.999 * v[i] + b2k * gi * gi; v[i] = vi;
    w[i] -= lr * mi / (Math.sqrt(vi) + eps);
  }
}
for (let r = 0; r < 20; r++) adam(w, m, v, g, 0.9, 0.1, 1e-3, 1e-7);
const t = performance.now();
for (let r = 0; r < 200; r++) adam(w, m, v, g, 0.9, 0.1, 1e-3, 1e-7);
console.log(((performance.now() - t) / 200).toFixed(3), 'ms per 1M-element Adam step');
