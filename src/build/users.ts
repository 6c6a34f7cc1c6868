/**
 * User and group names resolved the way BuildKit's file operations resolve them: from the image's
 * OWN /etc/passwd and /etc/group (never the builder's), numeric ids used as they are.
 */
import { GantryError } from '../util/errors.js';
import { resolveComponentsInRoot } from '../fs/unpack/index.js';
import { join } from 'node:path';
import { diskOps, type RootFsOps } from './root-fs-ops.js';

export interface Owner {
  uid: number;
  gid: number;
}

const NUMERIC = /^\d+$/;

/** Lines of a passwd/group file split on `:`; comments and malformed lines skipped. */
function records(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

type ReadOps = Pick<RootFsOps, 'lstat' | 'readlink' | 'readFile'>;

async function readInRoot(root: string | undefined, path: string, ops: ReadOps): Promise<string | undefined> {
  if (root === undefined) return undefined;
  try {
    const parts = resolveComponentsInRoot(root, path, { followFinal: true }, ops);
    return ops.readFile(join(root, ...parts)).toString('utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw err;
  }
}

/** Whether a `user[:group]` spec needs the image's files (it names a user or group). */
export function needsLookup(spec: string): boolean {
  return spec.split(':').some((p) => p !== '' && !NUMERIC.test(p));
}

/**
 * Resolves `user[:group]` (names or ids) against the files under `root`: a user name gives its
 * uid and primary gid; a numeric uid alone gives gid = uid; a group part overrides the gid.
 * Unknown names are errors, as in BuildKit. `ops` reads the root (an in-memory one for a sparse root).
 */
export async function resolveOwner(spec: string, root: string | undefined, ops: ReadOps = diskOps): Promise<Owner> {
  const [userPart = '', groupPart] = splitOnce(spec);
  let uid = 0;
  let gid = 0;
  if (userPart !== '') {
    if (NUMERIC.test(userPart)) {
      uid = Number(userPart);
      gid = uid;
    } else {
      const passwd = await readInRoot(root, '/etc/passwd', ops);
      const entry = passwd === undefined ? undefined : records(passwd).find((r) => r[0] === userPart);
      if (!entry || !NUMERIC.test(entry[2] ?? '') || !NUMERIC.test(entry[3] ?? '')) {
        throw new GantryError('BUILD_FAILED', `unable to find user ${userPart}: no matching entries in passwd file`, {
          hint: passwd === undefined ? 'the image has no /etc/passwd: use numeric ids (e.g. --chown=1000:1000)' : `add the user to the image's /etc/passwd first, or use a numeric uid`,
        });
      }
      uid = Number(entry[2]);
      gid = Number(entry[3]);
    }
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (NUMERIC.test(groupPart)) gid = Number(groupPart);
    else {
      const group = await readInRoot(root, '/etc/group', ops);
      const entry = group === undefined ? undefined : records(group).find((r) => r[0] === groupPart);
      if (!entry || !NUMERIC.test(entry[2] ?? '')) {
        throw new GantryError('BUILD_FAILED', `unable to find group ${groupPart}: no matching entries in group file`, {
          hint: group === undefined ? 'the image has no /etc/group: use a numeric gid' : `add the group to the image's /etc/group first, or use a numeric gid`,
        });
      }
      gid = Number(entry[2]);
    }
  }
  return { uid, gid };
}

function splitOnce(spec: string): [string, string | undefined] {
  const i = spec.indexOf(':');
  return i < 0 ? [spec, undefined] : [spec.slice(0, i), spec.slice(i + 1)];
}
