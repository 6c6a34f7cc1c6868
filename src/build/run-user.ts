/**
 * The identity a RUN executes as, resolved the way runc (under BuildKit) resolves a container's
 * `user[:group]`: from the image's OWN /etc/passwd and /etc/group, never the builder's.
 * - a user given by name, or by a uid that passwd lists, takes its primary gid and HOME from
 *   passwd, and (unless a group is given) every group of /etc/group that lists the user by name;
 * - a uid passwd does not list runs with gid 0, no supplementary groups and HOME `/`;
 * - an explicit group (name or gid) replaces the primary gid and drops supplementary groups;
 * - an unknown user or group NAME is an error, as in BuildKit;
 * - no USER at all is root: uid 0, gid 0, no supplementary groups, root's HOME.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunUser } from '../run/index.js';
import { resolveComponentsInRoot } from '../fs/unpack/index.js';
import { GantryError } from '../util/errors.js';

export interface ResolvedRunUser extends RunUser {
  /** HOME runc sets when the environment has none. */
  home: string;
}

const NUMERIC = /^\d+$/;

async function readInRoot(root: string, path: string): Promise<string | undefined> {
  try {
    return await readFile(join(root, ...resolveComponentsInRoot(root, path, { followFinal: true })), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw err;
  }
}

function records(text: string | undefined): string[][] {
  if (text === undefined) return [];
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

/** Resolves the config's `User` (empty = root) against the image root `root`. */
export async function resolveRunUser(spec: string, root: string): Promise<ResolvedRunUser> {
  const i = spec.indexOf(':');
  const userPart = i < 0 ? spec : spec.slice(0, i);
  const groupPart = i < 0 ? '' : spec.slice(i + 1);
  const out: ResolvedRunUser = { uid: 0, gid: 0, groups: [], home: '/' };
  let name: string | undefined;
  const passwd = records(await readInRoot(root, '/etc/passwd'));
  const uidGiven = NUMERIC.test(userPart);
  const entry = userPart === '' ? passwd.find((r) => r[2] === '0') : passwd.find((r) => (uidGiven ? r[2] === userPart : r[0] === userPart));
  if (entry && NUMERIC.test(entry[2] ?? '') && NUMERIC.test(entry[3] ?? '')) {
    name = entry[0];
    out.uid = Number(entry[2]);
    out.gid = Number(entry[3]);
    out.home = entry[5] || '/';
  } else if (uidGiven) {
    out.uid = Number(userPart);
  } else if (userPart !== '') {
    throw new GantryError('BUILD_FAILED', `unable to find user ${userPart}: no matching entries in passwd file`, {
      hint: "add the user to the image's /etc/passwd first (e.g. RUN adduser), or use a numeric USER",
    });
  }
  const groups = records(await readInRoot(root, '/etc/group'));
  if (groupPart !== '') {
    if (NUMERIC.test(groupPart)) out.gid = Number(groupPart);
    else {
      const g = groups.find((r) => r[0] === groupPart);
      if (!g || !NUMERIC.test(g[2] ?? '')) {
        throw new GantryError('BUILD_FAILED', `unable to find group ${groupPart}: no matching entries in group file`, {
          hint: "add the group to the image's /etc/group first, or use a numeric gid",
        });
      }
      out.gid = Number(g[2]);
    }
  } else if (name !== undefined && userPart !== '') {
    for (const g of groups) {
      const members = (g[3] ?? '').split(',').map((m) => m.trim());
      if (NUMERIC.test(g[2] ?? '') && members.includes(name)) {
        const gid = Number(g[2]);
        if (!out.groups.includes(gid)) out.groups.push(gid);
      }
    }
  }
  return out;
}
