import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GantryError } from '../util/errors.js';
import { createNsSandbox, type NsSandboxOptions } from './ns-sandbox.js';
import { findExecutable, findNsTools, SYSTEM_PATH } from './tools.js';
import type { RunSandbox, SandboxKind } from './types.js';

export interface BackendCheck {
  kind: SandboxKind;
  /** The machine allows it. */
  usable: boolean;
  /** gantry has it. */
  implemented: boolean;
  reason: string;
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
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
  return { kind: 'ns', usable: true, implemented: true, reason: 'root with CAP_SYS_ADMIN, overlayfs mounts' };
}

async function checkRootless(): Promise<BackendCheck> {
  const unshare = findExecutable('unshare');
  if (!unshare) return { kind: 'rootless', usable: false, implemented: false, reason: 'unshare (util-linux) is not installed; also not implemented yet' };
  const r = await run(unshare, ['--user', '--map-root-user', '--', 'true']);
  return {
    kind: 'rootless',
    usable: r.ok,
    implemented: false,
    reason: r.ok ? 'user namespaces work here, but the rootless backend is not implemented yet' : `user namespaces are not available (${r.text}); the rootless backend is not implemented yet either`,
  };
}

/** Which RUN backends can work on this machine, and why (or why not). */
export async function detectSandbox(opts: { stateDir?: string } = {}): Promise<SandboxDetection> {
  const checks = [
    await checkNs(opts.stateDir ?? tmpdir()),
    await checkRootless(),
    { kind: 'inplace' as const, usable: true, implemented: false, reason: 'always possible, but the inplace backend is not implemented yet' },
  ];
  return { kind: checks.find((c) => c.usable && c.implemented)?.kind, checks };
}

export function backendNotImplemented(kind: 'rootless' | 'inplace'): GantryError {
  return new GantryError('UNSUPPORTED', `the ${kind} RUN sandbox is not implemented yet; only the ns sandbox (root with CAP_SYS_ADMIN) is`, {
    hint: kind === 'rootless' ? 'run gantry as root (e.g. via sudo or a privileged pod) to use --sandbox=ns' : 'run gantry as root with CAP_SYS_ADMIN to use --sandbox=ns',
  });
}

/** Creates the sandbox for a backend; rootless and inplace fail with UNSUPPORTED for now. */
export async function createSandbox(kind: SandboxKind, opts: NsSandboxOptions): Promise<RunSandbox> {
  if (kind === 'ns') return createNsSandbox(opts);
  throw backendNotImplemented(kind);
}
