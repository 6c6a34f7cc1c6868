/**
 * src/run: executing RUN instructions in a sandbox. One interface (RunSandbox), backends chosen
 * by detectSandbox()/--sandbox: `ns` (root), `rootless` (the builder re-executes itself in a user
 * namespace with enterUserNamespace(), then works as ns) and `inplace` (Kaniko's model: the image
 * unpacked over the container's own `/`, layers from metadata snapshots).
 */
export type { RunSpec, RunMount, RunUser, RunResult, RunSandbox, SandboxKind, OutputSink } from './types.js';
export { createNsSandbox, type NsSandboxOptions } from './ns-sandbox.js';
export { createRootlessSandbox, APT_SANDBOX_CONF } from './rootless-sandbox.js';
export {
  enterUserNamespace,
  usableUserNamespace,
  planUserNamespace,
  userNamespaceState,
  USERNS_ENV,
  type EnterOptions,
  type UserNamespacePlan,
  type UserNamespaceState,
} from './rootless-userns.js';
export {
  createInplaceSandbox,
  isInplaceSandbox,
  INPLACE_FORCE_ENV,
  type InplaceSandbox,
  type InplaceSandboxOptions,
  type InplaceLayer,
} from './inplace.js';
export { detectContainer, type ContainerDetection, type ContainerProbeOptions } from './inplace-detect.js';
export { placeMounts, type PlacedMounts } from './inplace-mounts.js';
export { captureResolver, parseResolvConf, parseHosts, type CapturedResolver, type CaptureOptions } from './inplace-dns.js';
export { detectSandbox, createSandbox, backendNotImplemented, type BackendCheck, type SandboxDetection } from './detect.js';
export { CA_DIR, CA_BUNDLE_FILE, EXTRA_CA_FILE, caEnvironment } from './dev-dir.js';
export { LayerStack, type Resolution, type StackDir } from './layer-stack.js';
