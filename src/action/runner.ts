import { execFile, spawn } from 'node:child_process';
import { constants as osConstants, tmpdir } from 'node:os';
import { lchown, mkdir, opendir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { detectSandbox, enterUserNamespace } from '../run/index.js';
import { GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/**
 * Where the step's build runs, chosen before any work (issue "GitHub Action: RUN"): RUN needs a
 * sandbox, and the two that work on a runner need either root (`ns`) or the whole builder inside
 * a user namespace (`rootless`). The Action itself is started as `node dist/index.cjs` by the
 * runner's user (`runner`, not root, on GitHub-hosted runners, with passwordless sudo), so:
 *   root                         -> build in this process (ns, or what `sandbox` asks for)
 *   user namespaces work         -> re-execute the bundle inside one (rootless)
 *   passwordless sudo            -> re-execute the bundle under `sudo -E` (ns)
 *   none of them                 -> build in this process: a Dockerfile without RUN still builds,
 *                                   one with RUN fails before any work with NO_RUNNER_HINT.
 * The choice never depends on the Dockerfile (it may come from a git context fetched later):
 * the same runner always builds the same way, and the log says which and why.
 */
export type RunnerKind = 'in-process' | 'rootless' | 'sudo';

/** Set in the re-executed step (value: the RunnerKind), so it never re-executes again. */
export const RUNNER_ENV = 'GANTRY_ACTION_RUNNER';

export interface RunnerChoice {
  kind: RunnerKind;
  /** Why, for the log. */
  why: string;
  /** in-process without any RUN sandbox: the warning to log, also the hint if a RUN then fails. */
  unavailable?: string;
}

/** What the machine allows, behind functions so the choice can be tested anywhere. */
export interface RunnerProbes {
  env: NodeJS.ProcessEnv;
  isRoot(): boolean;
  /** Whether the rootless sandbox works once this process re-executes itself in a user namespace; `reason` says why (not). */
  userNamespace(): Promise<{ ok: boolean; reason: string }>;
  /** Whether `sudo -n true` works. */
  sudo(): Promise<{ ok: boolean; reason: string }>;
}

export const NO_RUNNER_HINT =
  'RUN needs root or user namespaces: enable unprivileged user namespaces on the runner (sysctl kernel.unprivileged_userns_clone=1, ' +
  'kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04) or allow passwordless sudo for the runner user, ' +
  'or run the job in the gantry executor image (container: with options: --privileged or as root)';

/**
 * The decision. Throws when `sandbox` names a backend this runner cannot reach, rather than
 * building with another one.
 */
export async function chooseRunner(sandbox: 'auto' | 'ns' | 'rootless' | 'inplace', probes: RunnerProbes): Promise<RunnerChoice> {
  const child = probes.env[RUNNER_ENV];
  if (child) return { kind: 'in-process', why: `re-executed by the step (${child})` };
  if (probes.isRoot()) return { kind: 'in-process', why: `running as root: RUN uses ${sandbox === 'auto' ? 'the ns sandbox (or inplace in a container)' : `the ${sandbox} sandbox`}` };

  let userns: { ok: boolean; reason: string } | undefined;
  if (sandbox === 'auto' || sandbox === 'rootless') {
    userns = await probes.userNamespace();
    if (userns.ok) return { kind: 'rootless', why: `not root, and the rootless sandbox works here (${userns.reason})` };
    if (sandbox === 'rootless') {
      throw new GantryError('UNSUPPORTED', `sandbox: rootless cannot be used on this runner: ${userns.reason}`, {
        hint: 'enable unprivileged user namespaces on the runner, or leave `sandbox` empty (auto) to use sudo when it is allowed',
      });
    }
  }
  const sudo = await probes.sudo();
  if (sudo.ok) {
    return { kind: 'sudo', why: `not root${userns ? `, user namespaces unavailable (${userns.reason})` : `, sandbox: ${sandbox} needs root`}, passwordless sudo works: the step re-executes itself under sudo` };
  }
  const why = `not root${userns ? `, user namespaces unavailable (${userns.reason})` : ''}, and sudo -n fails (${sudo.reason})`;
  if (sandbox !== 'auto') {
    throw new GantryError('UNSUPPORTED', `sandbox: ${sandbox} needs root: ${why}`, { hint: NO_RUNNER_HINT });
  }
  return { kind: 'in-process', why, unavailable: `no RUN sandbox can be used on this runner: ${why}. A Dockerfile with RUN will fail; ${NO_RUNNER_HINT}` };
}

function probe(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; reason: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 10_000 }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return resolve({ ok: false, reason: `${cmd} is not installed` });
      const text = String(stderr).trim() || String(stdout).trim() || (err ? err.message : 'ok');
      resolve({ ok: !err, reason: text.split('\n')[0]! });
    });
  });
}

/**
 * Whether the rootless sandbox will work once the step is inside a user namespace: not only "can
 * one be created" (Ubuntu's AppArmor restriction allows that, then takes the capabilities away
 * inside), but the overlay mount RUN needs, made in one. This is the build engine's own
 * detection, asked from outside the namespace, so the Action and `--sandbox=auto` never disagree.
 */
export async function rootlessWorks(stateDir: string): Promise<{ ok: boolean; reason: string }> {
  try {
    const { checks } = await detectSandbox({ stateDir });
    const rootless = checks.find((c) => c.kind === 'rootless');
    if (!rootless) return { ok: false, reason: 'the build engine did not check the rootless sandbox' };
    return { ok: rootless.usable && rootless.implemented, reason: rootless.reason };
  } catch (err) {
    // A probe that fails outright (e.g. its directory under RUNNER_TEMP cannot be made) must not fail the step.
    return { ok: false, reason: (err as Error).message };
  }
}

/** The real machine. */
export function systemProbes(env: NodeJS.ProcessEnv): RunnerProbes {
  return {
    env,
    isRoot: () => process.getuid?.() === 0,
    userNamespace: () => rootlessWorks(env.RUNNER_TEMP || tmpdir()),
    sudo: () => probe('sudo', ['-n', 'true'], env),
  };
}

/** argv of this process (node, the bundle, its arguments), to start it again. */
function selfArgv(): string[] {
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
}

function exitCodeOf(code: number | null, sig: NodeJS.Signals | null): number {
  return sig ? 128 + ((osConstants.signals as Record<string, number>)[sig] ?? 0) : (code ?? 1);
}

/**
 * `sudo -n -E node <bundle>`: the child sees the step's environment (INPUT_*, GITHUB_*, RUNNER_*);
 * PATH and HOME are set again after sudo, which may reset them (secure_path, set_home).
 */
export function sudoArgv(argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const keep = ['PATH', 'HOME'].filter((k) => env[k] !== undefined).map((k) => `${k}=${env[k]}`);
  return ['-n', '--preserve-env', '--', 'env', ...keep, ...argv];
}

/**
 * Runs the step again as the chosen runner, sharing stdout/stderr (the runner reads workflow
 * commands from them; the child writes outputs and the summary to the same files). Returns the
 * child's exit code. SIGINT/SIGTERM (a cancelled job) are forwarded.
 */
export async function reexecStep(kind: 'rootless' | 'sudo', env: NodeJS.ProcessEnv, logger: Logger, argv: string[] = selfArgv()): Promise<number> {
  const childEnv = { ...env, [RUNNER_ENV]: kind };
  if (kind === 'rootless') {
    const code = await enterUserNamespace({ env: childEnv, argv, logger });
    if (code === undefined) throw new GantryError('SANDBOX_FAILED', 'could not re-execute the step in a user namespace: this process already is in one');
    return code;
  }
  return new Promise<number>((resolve, reject) => {
    const child = spawn('sudo', sudoArgv(argv, env), { stdio: 'inherit', env: childEnv });
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, () => child.kill(sig)] as const);
    for (const [sig, h] of handlers) process.on(sig, h);
    const done = () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    };
    child.on('error', (err) => {
      done();
      reject(new GantryError('SANDBOX_FAILED', `re-executing the step under sudo failed: ${err.message}`, { hint: NO_RUNNER_HINT }));
    });
    child.on('close', (code, sig) => {
      done();
      resolve(exitCodeOf(code, sig));
    });
  });
}

/** The user sudo was called by (SUDO_UID/SUDO_GID), when this is the step re-executed under sudo. */
export function sudoCaller(env: NodeJS.ProcessEnv): { uid: number; gid: number } | undefined {
  if (env[RUNNER_ENV] !== 'sudo' || process.getuid?.() !== 0) return undefined;
  const uid = Number(env.SUDO_UID);
  const gid = Number(env.SUDO_GID);
  return Number.isSafeInteger(uid) && Number.isSafeInteger(gid) && uid > 0 ? { uid, gid } : undefined;
}

/**
 * Gives a tree the step wrote as root back to the runner's user, so later steps (upload-artifact,
 * `rm -rf`, the next checkout) can use and remove it. Symlinks are changed, never followed.
 */
export async function chownTree(path: string, owner: { uid: number; gid: number }): Promise<void> {
  try {
    await lchown(path, owner.uid, owner.gid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let dir;
  try {
    dir = await opendir(path);
  } catch {
    return; // not a directory
  }
  for await (const entry of dir) {
    const p = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(p, owner);
    else await lchown(p, owner.uid, owner.gid);
  }
}

/** mkdir -p that gives every directory it creates to `owner`. */
export async function mkdirOwned(path: string, owner: { uid: number; gid: number }): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (first === undefined) return;
  for (let p = path; ; p = dirname(p)) {
    await lchown(p, owner.uid, owner.gid);
    if (p === first || dirname(p) === p) break;
  }
}
