/**
 * src/run: executing RUN instructions in a sandbox. One interface (RunSandbox), backends chosen
 * by detectSandbox()/--sandbox: `ns` (root, implemented), `rootless` and `inplace` (not yet).
 */
export type { RunSpec, RunMount, RunUser, RunResult, RunSandbox, SandboxKind, OutputSink } from './types.js';
export { createNsSandbox, type NsSandboxOptions } from './ns-sandbox.js';
export { detectSandbox, createSandbox, backendNotImplemented, type BackendCheck, type SandboxDetection } from './detect.js';
export { CA_DIR, CA_BUNDLE_FILE, EXTRA_CA_FILE, caEnvironment } from './dev-dir.js';
export { LayerStack, type Resolution, type StackDir } from './layer-stack.js';
