import { randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.js';

const FILES = ['/etc/subuid', '/etc/subgid'];

/** The end of the highest range in a subid file, so a new range overlaps nobody's. */
function freeSubIdStart(file: string): number {
  let end = 200000;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.split(':');
    if (f.length === 3) end = Math.max(end, Number(f[1]) + Number(f[2]));
  }
  return end;
}

/**
 * Gives a test user the same subordinate uid and gid range (for rootless builds), after every
 * existing range; returns its start. Tests that call this run as root, one file at a time.
 */
export function grantSubIdRange(user: string, count = 65536): number {
  const start = Math.max(...FILES.map(freeSubIdStart));
  for (const f of FILES) writeFileSync(f, `${user}:${start}:${count}\n`, { flag: 'a' });
  return start;
}

/** Removes every subordinate id line of a test user. */
export function revokeSubIdRange(user: string): void {
  for (const file of FILES) {
    const kept = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith(`${user}:`));
    writeFileSync(file, kept.length ? kept.join('\n') + '\n' : '');
  }
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** A directory the user owns, `<parent>/<name>`. */
  dir: string;
  /** Start of the user's subordinate id range; undefined without one. */
  subIdStart?: number;
  /** Kills the user's processes, removes the user (and its system home) and its id range. */
  cleanup(): Promise<void>;
}

/**
 * A real unprivileged user for rootless tests, with or without a subordinate id range, owning a
 * fresh directory under `parent`. `systemHome` also makes /home/<name> (useradd -m).
 */
export async function createTestUser(parent: string, opts: { prefix: string; withSubIds: boolean; systemHome?: boolean }): Promise<TestUser> {
  const name = `${opts.prefix}-${randomBytes(4).toString('hex')}${opts.withSubIds ? 'f' : 's'}`;
  // -K SUB_*_COUNT=0: useradd would otherwise allocate ranges itself on some systems.
  await run('useradd', [opts.systemHome ? '-m' : '-M', '-K', 'SUB_UID_COUNT=0', '-K', 'SUB_GID_COUNT=0', name], { check: true });
  const subIdStart = opts.withSubIds ? grantSubIdRange(name) : undefined;
  const uid = Number((await run('id', ['-u', name], { check: true })).stdout.trim());
  const gid = Number((await run('id', ['-g', name], { check: true })).stdout.trim());
  const dir = join(parent, name);
  mkdirSync(dir);
  chownSync(dir, uid, gid);
  return {
    name,
    uid,
    gid,
    dir,
    ...(subIdStart !== undefined ? { subIdStart } : {}),
    async cleanup() {
      revokeSubIdRange(name);
      await run('pkill', ['-KILL', '-u', String(uid)]);
      await run('userdel', [...(opts.systemHome ? ['-r'] : []), '-f', name]);
    },
  };
}
