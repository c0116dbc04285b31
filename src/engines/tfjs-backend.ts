/**
 * Picks the TF.js backend: the native TensorFlow bindings when they load, else wasm, else
 * TF.js' plain-JS cpu kernels. TF.js keeps one global backend per process, so the choice is
 * made once and cached; every engine in the process shares it.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type { DeviceChoice } from './engine.ts';

/** The TF.js namespace. tfjs-node(-gpu) re-export it whole, so one type covers every backend. */
export type Tf = typeof import('@tensorflow/tfjs');

export type TfProvider = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

export interface TfBackend {
  readonly tf: Tf;
  readonly provider: TfProvider;
  /** Why faster backends were passed over, one line each. */
  readonly notes: readonly string[];
}

/** Loads a module by specifier. Injectable so tests can stage missing or broken installs. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

// A variable specifier keeps TypeScript from resolving the optional packages, which are
// usually absent, and hands back `unknown` that we check before trusting.
const importModule: ModuleImporter = (specifier) => import(specifier);

interface Candidate {
  readonly provider: TfProvider;
  /** How notes name it: "… — using <label>". */
  readonly label: string;
  /** The optional package it needs, whose absence is expected rather than a fault. */
  readonly optionalPackage?: string;
  /** Makes it the global backend, or throws why it cannot. */
  activate(importer: ModuleImporter): Promise<Tf>;
}

const TFJS = '@tensorflow/tfjs';
const TFJS_WASM = '@tensorflow/tfjs-backend-wasm';

function nativeCandidate(provider: 'tensorflow-gpu' | 'tensorflow', pkg: string): Candidate {
  return {
    provider,
    label: pkg.replace('@tensorflow/', ''),
    optionalPackage: pkg,
    async activate(importer) {
      // Importing registers the 'tensorflow' backend, loading libtensorflow (and CUDA).
      const tf = asTf(await importer(pkg), pkg);
      if (!(await tf.setBackend('tensorflow'))) throw new Error("its 'tensorflow' backend did not initialise");
      return tf;
    },
  };
}

const WASM: Candidate = {
  provider: 'wasm',
  // tfjs-backend-wasm only spawns threads through Blob-URL workers, which Node's
  // worker_threads reject (tfjs#3830), so XNNPACK runs on one thread whatever we ask.
  label: 'the wasm backend (single-threaded under Node)',
  async activate(importer) {
    const tf = asTf(await importer(TFJS), TFJS);
    const wasm = await importer(TFJS_WASM);
    const setWasmPaths = property(wasm, 'setWasmPaths') ?? property(property(wasm, 'default'), 'setWasmPaths');
    if (typeof setWasmPaths !== 'function') throw new Error(`${TFJS_WASM} does not export setWasmPaths`);
    // Emscripten looks for the .wasm next to whichever bundle got loaded; name the installed
    // directory so a bundler or test runner that moves the JS cannot break it. (Calling it
    // again after a successful init is harmless; it only throws after a failed one.)
    setWasmPaths(wasmDirectory());
    if (!(await tf.setBackend('wasm'))) throw new Error('it did not initialise');
    return tf;
  },
};

const CPU: Candidate = {
  provider: 'cpu',
  label: "TF.js' plain-JavaScript cpu backend (slow)",
  async activate(importer) {
    const tf = asTf(await importer(TFJS), TFJS);
    if (!(await tf.setBackend('cpu'))) throw new Error('it did not initialise');
    return tf;
  },
};

function candidatesFor(device: DeviceChoice): Candidate[] {
  const native = [nativeCandidate('tensorflow', '@tensorflow/tfjs-node')];
  if (device !== 'cpu') native.unshift(nativeCandidate('tensorflow-gpu', '@tensorflow/tfjs-node-gpu'));
  return [...native, WASM, CPU];
}

interface Failure {
  readonly label: string;
  readonly missing: boolean;
  readonly reason: string;
}

/**
 * Tries each backend in order of speed and activates the first that works. Never throws for
 * a missing or broken optional package; throws only when not even TF.js' cpu backend loads.
 */
export async function loadTfBackend(device: DeviceChoice, importer: ModuleImporter = importModule): Promise<TfBackend> {
  const failures: Failure[] = [];
  for (const candidate of candidatesFor(device)) {
    try {
      const tf = await candidate.activate(importer);
      return { tf, provider: candidate.provider, notes: describeFailures(failures, candidate.label) };
    } catch (error) {
      failures.push(classify(candidate, error));
    }
  }
  throw new Error(`no TF.js backend could be loaded: ${failures.map((f) => `${f.label} ${f.reason}`).join('; ')}`);
}

let chosen: { device: DeviceChoice; backend: Promise<TfBackend> } | undefined;

/** The process-wide backend, chosen on first use for that first request's device. */
export async function tfBackend(device: DeviceChoice): Promise<TfBackend> {
  if (!chosen) {
    const backend = loadTfBackend(device);
    chosen = { device, backend };
    // A failure (no TF.js at all) is not cached, so a later call reports it afresh.
    backend.catch(() => {
      if (chosen?.backend === backend) chosen = undefined;
    });
  }
  const first = chosen;
  const backend = await first.backend;
  if (device === first.device || !couldDiffer(device, first.device, backend.provider)) return backend;
  return {
    ...backend,
    notes: [
      ...backend.notes,
      `TF.js keeps one backend per process; staying on ${backend.provider} (chosen for device '${first.device}')`,
    ],
  };
}

/** Whether asking afresh for `wanted` might have picked something other than what `first` got. */
function couldDiffer(wanted: DeviceChoice, first: DeviceChoice, got: TfProvider): boolean {
  if (wanted === 'cpu') return got === 'tensorflow-gpu';
  // Going from 'cpu' to 'gpu'/'auto' skipped the GPU package; 'gpu' and 'auto' try the same list.
  return first === 'cpu';
}

function classify(candidate: Candidate, error: unknown): Failure {
  const { label, optionalPackage: pkg } = candidate;
  const code = property(error, 'code');
  const message = error instanceof Error ? error.message : String(error);
  // A missing dependency *of* the package also reports ERR_MODULE_NOT_FOUND; only the
  // package's own name in the message means the package itself is absent.
  if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && pkg && message.includes(`'${pkg}'`)) {
    return { label, missing: true, reason: 'is not installed' };
  }
  const detail = shortReason(message);
  if (!pkg) return { label, missing: false, reason: `failed: ${detail}` };
  const cuda = candidate.provider === 'tensorflow-gpu' && /libcu|libnvinfer/.test(message);
  return {
    label,
    missing: false,
    reason: `is installed but cannot load (${detail})${cuda ? '; needs CUDA 11.2 and cuDNN 8.1' : ''}`,
  };
}

/** The first line of a loader error, without dlopen's "No such file or directory" tail. */
function shortReason(message: string): string {
  const line = message.split('\n', 1)[0].trim();
  const dlopen = /([^\s/]+\.so[\w.]*): cannot open shared object file/.exec(line);
  if (dlopen) return `${dlopen[1]}: cannot open shared object file`;
  return line.length > 160 ? `${line.slice(0, 157)}…` : line;
}

function describeFailures(failures: readonly Failure[], using: string): string[] {
  // Broken installs first: they are what the user most likely wants to fix.
  const notes = failures.filter((f) => !f.missing).map((f) => `${f.label} ${f.reason} — using ${using}`);
  const missing = failures.filter((f) => f.missing).map((f) => f.label);
  if (missing.length) {
    const names = missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(', ')} and ${missing.at(-1)}`;
    notes.push(`${names} ${missing.length === 1 ? 'is' : 'are'} not installed — using ${using}`);
  }
  return notes;
}

/** Checks that a loaded module is a TF.js namespace (ESM or CommonJS interop shape). */
function asTf(mod: unknown, specifier: string): Tf {
  for (const candidate of [mod, property(mod, 'default')]) {
    const looksLikeTf = ['setBackend', 'tidy', 'conv2d'].every((key) => typeof property(candidate, key) === 'function');
    if (looksLikeTf) return candidate as Tf;
  }
  throw new Error(`${specifier} does not look like TF.js`);
}

function property(value: unknown, key: string): unknown {
  return (typeof value === 'object' || typeof value === 'function') && value !== null
    ? (value as Record<string, unknown>)[key]
    : undefined;
}

function wasmDirectory(): string {
  const entry = createRequire(import.meta.url).resolve(TFJS_WASM);
  return path.dirname(entry) + path.sep;
}
