import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants as osConstants, userInfo } from 'node:os';
import { GantryError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { findExecutable, SYSTEM_PATH } from './tools.js';

/**
 * The user namespace of the rootless backend.
 *
 * Design (DESIGN.md §5, spike Q2b): the builder re-executes itself ONCE per build inside a user
 * namespace where it is uid 0 and the user's whole `/etc/subuid` / `/etc/subgid` range is mapped
 * (util-linux `unshare --map-users/--map-groups`, which run the setuid `newuidmap`/`newgidmap`
 * of the Debian package `uidmap`). From then on everything works as under `ns`, with the same
 * files seen with the same owners by every part of the builder:
 * - unpacking keeps the base image's owners (lchown to any mapped id works);
 * - the diff reads what RUNs wrote (an apt `_apt` 0700 directory is unreadable to the host user,
 *   so a diff outside the namespace could not even list it) and sees container ids directly, so
 *   no host -> container id translation is needed anywhere;
 * - each RUN is the `ns` chain (mount + pid namespace, overlay with `userxattr`).
 * A per-RUN user namespace (or a holder process entered with nsenter) was rejected for that
 * reason: it confines RUN, but the diff and the unpack would run outside with the wrong view.
 *
 * Without a subordinate range (or without newuidmap, or under no_new_privs) only the user's own
 * id can be mapped, to 0: the "squashed" mode. Every file the user owns appears as root, other
 * ids cannot be used at all, setgroups(2) is denied. It works for simple builds and is loudly
 * reported.
 */

/** Set in the re-executed builder, so it never tries to enter a second time. */
export const USERNS_ENV = 'GANTRY_USERNS';

export interface IdMapLine {
  inside: number;
  outside: number;
  count: number;
}

export interface SubIdRange {
  start: number;
  count: number;
}

/** Parses /proc/<pid>/uid_map or gid_map. */
export function parseIdMap(text: string): IdMapLine[] {
  const out: IdMapLine[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3) continue;
    const [inside, outside, count] = f.map(Number);
    if ([inside, outside, count].every(Number.isSafeInteger)) out.push({ inside, outside, count });
  }
  return out;
}

/**
 * Where this process is: `host` (the initial user namespace: identity map), `full` (a user
 * namespace mapping more than one id), `squashed` (only one id mapped).
 */
export type UserNamespaceState = 'host' | 'full' | 'squashed';

export function userNamespaceStateOf(uidMap: readonly IdMapLine[]): UserNamespaceState {
  if (uidMap.length === 1 && uidMap[0].inside === 0 && uidMap[0].outside === 0 && uidMap[0].count === 4294967295) return 'host';
  const total = uidMap.reduce((n, l) => n + l.count, 0);
  return total > 1 ? 'full' : 'squashed';
}

export function readIdMap(kind: 'uid' | 'gid', pid: number | 'self' = 'self'): IdMapLine[] {
  return parseIdMap(readFileSync(`/proc/${pid}/${kind}_map`, 'utf8'));
}

export function userNamespaceState(): UserNamespaceState {
  return userNamespaceStateOf(readIdMap('uid'));
}

/** Whether an id is usable inside the current namespace (mapped). */
export function isMapped(id: number, map: readonly IdMapLine[]): boolean {
  return map.some((l) => id >= l.inside && id < l.inside + l.count);
}

/**
 * The first range of `/etc/subuid` or `/etc/subgid` for a user, matched by name or numeric id
 * (both forms are valid, as shadow's newuidmap accepts).
 */
export function parseSubIds(text: string, user: { name: string; id: number }): SubIdRange | undefined {
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length !== 3 || line.trim().startsWith('#')) continue;
    if (f[0] !== user.name && f[0] !== String(user.id)) continue;
    const start = Number(f[1]);
    const count = Number(f[2]);
    if (Number.isSafeInteger(start) && Number.isSafeInteger(count) && count > 0) return { start, count };
  }
  return undefined;
}

function readSubIds(file: string, user: { name: string; id: number }): SubIdRange | undefined {
  try {
    return parseSubIds(readFileSync(file, 'utf8'), user);
  } catch {
    return undefined;
  }
}

export interface UserNamespacePlan {
  mode: 'full' | 'squashed';
  /** The unshare arguments that create the namespace (before `--` and the command). */
  unshareArgs: string[];
  /** Why the mode is squashed, for the warning. */
  reason?: string;
  uids?: SubIdRange;
  gids?: SubIdRange;
}

/** The full mapping when the user has subordinate ranges and the uidmap tools, else squashed. */
export function planUserNamespace(files = { subuid: '/etc/subuid', subgid: '/etc/subgid' }): UserNamespacePlan {
  const squashed = (reason: string): UserNamespacePlan => ({ mode: 'squashed', reason, unshareArgs: ['--user', '--map-root-user'] });
  const info = userInfo();
  const uids = readSubIds(files.subuid, { name: info.username, id: info.uid });
  const gids = readSubIds(files.subgid, { name: info.username, id: info.gid });
  if (!uids || !gids) return squashed(`${info.username} has no range in ${!uids ? files.subuid : files.subgid}`);
  const missing = ['newuidmap', 'newgidmap'].filter((t) => !findExecutable(t));
  if (missing.length > 0) return squashed(`${missing.join(' and ')} (package uidmap) not installed`);
  return {
    mode: 'full',
    uids,
    gids,
    unshareArgs: [
      '--user', '--map-user=0', '--map-group=0',
      `--map-users=${uids.start},1,${uids.count}`,
      `--map-groups=${gids.start},1,${gids.count}`,
    ],
  };
}

function probe(cmd: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { PATH: SYSTEM_PATH, LC_ALL: 'C' }, timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ ok: !err, text: String(stderr).trim() || String(stdout).trim() || (err ? err.message : '') });
    });
  });
}

/**
 * Chooses the namespace this machine allows: the full plan if creating it works, else the
 * squashed one (newuidmap refuses under no_new_privs, for instance), else an error.
 */
export async function usableUserNamespace(): Promise<UserNamespacePlan> {
  const unshare = findExecutable('unshare');
  if (!unshare) throw new GantryError('UNSUPPORTED', 'the rootless sandbox needs `unshare` (util-linux), which is not installed', { hint: 'install util-linux' });
  const plan = planUserNamespace();
  if (plan.mode === 'full') {
    const r = await probe(unshare, [...plan.unshareArgs, '--', 'true']);
    if (r.ok) return plan;
    const fallback: UserNamespacePlan = { mode: 'squashed', reason: `mapping the subordinate ids failed: ${r.text}`, unshareArgs: ['--user', '--map-root-user'] };
    const s = await probe(unshare, [...fallback.unshareArgs, '--', 'true']);
    if (s.ok) return fallback;
  } else {
    const s = await probe(unshare, [...plan.unshareArgs, '--', 'true']);
    if (s.ok) return plan;
  }
  const r = await probe(unshare, ['--user', '--map-root-user', '--', 'true']);
  throw new GantryError('UNSUPPORTED', `user namespaces are not available here: ${r.text}`, {
    hint: 'allow unprivileged user namespaces (sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu, a seccomp profile that allows unshare in containers), or run as root with --sandbox=ns',
  });
}

export interface EnterOptions {
  logger?: Logger;
  /** Default: this process's own command line. */
  argv?: string[];
  env?: NodeJS.ProcessEnv;
}

export function squashWarning(reason: string | undefined): string {
  return `ROOTLESS BUILD WITH SQUASHED OWNERSHIP: only your own uid can be mapped (${reason ?? 'no subordinate ids'}), so every file appears owned by root, ` +
    'chown to any other user fails, RUN cannot switch to another USER, and apt is told to run its sandbox as root. ' +
    'Images built this way lose file ownership. Add a range to /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER`) and install uidmap.';
}

/**
 * Re-executes this program inside the build's user namespace and waits for it.
 *
 * Returns undefined when this process already is the one to continue (it is inside: re-executed,
 * or started in a user namespace some other way); otherwise the exit code the caller should exit
 * with (128 + signal when the child was killed). SIGINT, SIGTERM and SIGHUP are forwarded: after
 * unshare's exec the child pid IS the re-executed builder.
 */
export async function enterUserNamespace(opts: EnterOptions = {}): Promise<number | undefined> {
  const env = opts.env ?? process.env;
  if (env[USERNS_ENV] || userNamespaceState() !== 'host') return undefined;
  const logger = opts.logger ?? silentLogger;
  const plan = await usableUserNamespace();
  if (plan.mode === 'squashed') logger.log('warn', squashWarning(plan.reason));
  else logger.log('debug', `entering a user namespace: uids 1-${plan.uids!.count} -> ${plan.uids!.start}-, gids 1-${plan.gids!.count} -> ${plan.gids!.start}-`);
  const argv = opts.argv ?? [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  const unshare = findExecutable('unshare')!;
  return new Promise<number>((resolve, reject) => {
    const child = spawn(unshare, [...plan.unshareArgs, '--', ...argv], { stdio: 'inherit', env: { ...env, [USERNS_ENV]: plan.mode } });
    const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, forward(sig)] as const);
    for (const [sig, h] of handlers) process.on(sig, h);
    const done = () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    };
    child.on('error', (err) => {
      done();
      reject(new GantryError('SANDBOX_FAILED', `re-executing the builder in a user namespace failed: ${err.message}`));
    });
    child.on('close', (code, sig) => {
      done();
      resolve(sig ? 128 + signalNumberOf(sig) : (code ?? 1));
    });
  });
}

function signalNumberOf(sig: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 0;
}
