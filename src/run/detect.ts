import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GantryError } from '../util/errors.js';
import { createNsSandbox, type NsSandboxOptions } from './ns-sandbox.js';
import { createInplaceSandbox, INPLACE_FORCE_ENV, type InplaceSandboxOptions } from './inplace.js';
import { detectContainer, type ContainerProbeOptions } from './inplace-detect.js';
import { createRootlessSandbox, kernelSupportsUserxattr } from './rootless-sandbox.js';
import { usableUserNamespace, userNamespaceState } from './rootless-userns.js';
import { findExecutable, findNsTools, SYSTEM_PATH } from './tools.js';
import type { RunSandbox, SandboxKind } from './types.js';
import { removeTree } from './remove-tree.js';

export interface BackendCheck {
  kind: SandboxKind;
  /** The machine allows it. */
  usable: boolean;
  /** gantry has it. */
  implemented: boolean;
  reason: string;
  /** rootless only: the builder must re-execute itself in its user namespace first (enterUserNamespace). */
  reexec?: boolean;
}

export interface SandboxDetection {
  /** The first backend that is both usable and implemented, the one `--sandbox=auto` picks. */
  kind?: SandboxKind;
  checks: BackendCheck[];
}

const CAP_SYS_ADMIN = 21;

function run(cmd: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { PATH: SYSTEM_PATH, LC_ALL: 'C' }, timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ ok: !err, text: `${String(stderr).trim() || String(stdout).trim() || (err ? err.message : '')}` });
    });
  });
}

async function hasCapSysAdmin(): Promise<boolean> {
  const status = await readFile('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return !!m && (BigInt('0x' + m[1]) & (1n << BigInt(CAP_SYS_ADMIN))) !== 0n;
}

async function checkNs(stateDir: string): Promise<BackendCheck> {
  const no = (reason: string): BackendCheck => ({ kind: 'ns', usable: false, implemented: true, reason });
  if (process.getuid?.() !== 0) return no('not running as root');
  if (!(await hasCapSysAdmin())) return no('root without CAP_SYS_ADMIN (an unprivileged container?)');
  let tools;
  try {
    tools = findNsTools();
  } catch (err) {
    return no((err as Error).message);
  }
  // The real question is whether overlayfs mounts here with our options and an upperdir on this
  // filesystem (an upperdir on overlayfs itself, as inside a container's root, does not work).
  const dir = await mkdtemp(join(stateDir, 'gantry-detect-'));
  try {
    for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(dir, d));
    const opts = `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w,redirect_dir=off,metacopy=off,index=off,volatile`;
    const r = await run(tools.unshare, ['--mount', '--', tools.mount, '-t', 'overlay', 'overlay', '-o', opts, join(dir, 'm')]);
    if (!r.ok) return no(`overlayfs cannot be mounted with an upper directory under ${stateDir}: ${r.text}`);
  } finally {
    await removeTree(dir);
  }
  return { kind: 'ns', usable: true, implemented: true, reason: 'root with CAP_SYS_ADMIN, overlayfs mounts' };
}

/**
 * Rootless: user namespaces, overlayfs with `userxattr` inside one (Linux >= 5.11). Outside the
 * namespace (`reexec`), the caller must enterUserNamespace() before creating the sandbox.
 */
async function checkRootless(stateDir: string): Promise<BackendCheck> {
  const base = { kind: 'rootless' as const, implemented: true };
  const unshare = findExecutable('unshare');
  const mount = findExecutable('mount');
  if (!unshare || !mount) return { ...base, usable: false, reason: 'unshare and mount (util-linux) are not installed' };
  if (!kernelSupportsUserxattr()) return { ...base, usable: false, reason: `Linux ${release()} is older than 5.11: no overlayfs in a user namespace` };
  const state = userNamespaceState();
  let prefix: string[] = [];
  let mode: string = state;
  let why = '';
  if (state === 'host') {
    try {
      const plan = await usableUserNamespace();
      prefix = plan.unshareArgs;
      mode = plan.mode;
      why = plan.reason ? ` (${plan.reason})` : '';
    } catch (err) {
      return { ...base, usable: false, reason: (err as Error).message };
    }
  }
  const dir = await mkdtemp(join(stateDir, 'gantry-detect-rootless-'));
  try {
    for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(dir, d));
    const opts = `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w,userxattr,redirect_dir=nofollow,metacopy=off,index=off,volatile`;
    const r = await run(unshare, [...prefix, '--mount', '--', mount, '-t', 'overlay', 'overlay', '-o', opts, join(dir, 'm')]);
    if (!r.ok) return { ...base, usable: false, reason: `overlayfs with userxattr cannot be mounted in a user namespace under ${stateDir}: ${r.text}` };
  } finally {
    await removeTree(dir);
  }
  const squash = mode === 'squashed' ? `, but only uid 0 can be mapped${why}: ownership is squashed` : ', full subordinate id range';
  return state === 'host'
    ? { ...base, usable: true, reexec: true, reason: `user namespaces work${squash}; the builder re-executes itself inside one (enterUserNamespace)` }
    : { ...base, usable: true, reason: `inside a user namespace${squash}` };
}

function checkInplace(probe?: ContainerProbeOptions): BackendCheck {
  const no = (reason: string): BackendCheck => ({ kind: 'inplace', usable: false, implemented: true, reason });
  if (process.getuid?.() !== 0) return no('not running as root');
  const found = detectContainer(probe);
  if (found.inContainer) return { kind: 'inplace', usable: true, implemented: true, reason: `root inside a container (${found.evidence}): the image is unpacked over /` };
  if ((probe?.env ?? process.env)[INPLACE_FORCE_ENV] === '1') return { kind: 'inplace', usable: true, implemented: true, reason: `${INPLACE_FORCE_ENV}=1, although no container was detected` };
  return no(`not inside a container (${found.evidence}): building in place would overwrite this machine's /`);
}

/** Which RUN backends can work on this machine, and why (or why not). */
export async function detectSandbox(opts: { stateDir?: string; probe?: ContainerProbeOptions } = {}): Promise<SandboxDetection> {
  const stateDir = opts.stateDir ?? tmpdir();
  // Each probe spawns mount helpers (30-90 ms). Where ns works (root with CAP_SYS_ADMIN) the
  // rootless probe is skipped: that sandbox is for builders that are not root (the CLI re-executes
  // only those in a user namespace; createRootlessSandbox refuses to run outside one). Elsewhere
  // the ns check fails without spawning anything, except inside such a user namespace.
  const ns = await checkNs(stateDir);
  const rootless: BackendCheck = ns.usable
    ? { kind: 'rootless', usable: false, implemented: true, reason: 'not probed: running as root, where the ns sandbox works (rootless is for builders that are not root)' }
    : await checkRootless(stateDir);
  const checks = [ns, rootless, checkInplace(opts.probe)];
  return { kind: checks.find((c) => c.usable && c.implemented)?.kind, checks };
}

export function backendNotImplemented(kind: 'rootless' | 'inplace'): GantryError {
  return new GantryError('UNSUPPORTED', `the ${kind} RUN sandbox is not implemented yet; only the ns sandbox (root with CAP_SYS_ADMIN) is`, {
    hint: kind === 'rootless' ? 'run gantry as root (e.g. via sudo or a privileged pod) to use --sandbox=ns' : 'run gantry as root with CAP_SYS_ADMIN to use --sandbox=ns',
  });
}

/**
 * Creates the sandbox for a backend. `inplace` reads only the InplaceSandboxOptions fields (all
 * optional) and returns an InplaceSandbox: narrow it with isInplaceSandbox() to unpack, snapshot
 * and wipe the root.
 */
export async function createSandbox(kind: SandboxKind, opts: NsSandboxOptions | InplaceSandboxOptions): Promise<RunSandbox> {
  if (kind === 'ns') return createNsSandbox(opts as NsSandboxOptions);
  if (kind === 'rootless') return createRootlessSandbox(opts as NsSandboxOptions);
  if (kind === 'inplace') return createInplaceSandbox(opts as InplaceSandboxOptions);
  throw backendNotImplemented(kind);
}
