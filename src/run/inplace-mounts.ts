import { cpSync, lstatSync, mkdirSync, renameSync, rmdirSync, rmSync, statSync, utimesSync, copyFileSync, type BigIntStats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, posix } from 'node:path';
import { GantryError, wrapError } from '../util/errors.js';
import type { RunMount } from './types.js';

/**
 * RUN mounts without mounting (the in-place backend may not): each target is materialised before
 * the RUN and taken away after it, and whatever the image had at the target is moved aside and
 * put back, so nothing of a secret, a cache or a bind reaches the snapshot.
 * - bind (a secret file, a context directory): copied in, deleted after; `readonly` cannot be
 *   enforced, and writes are discarded, as with BuildKit's default read-only binds;
 * - tmpfs: an empty directory (mode 1777), deleted after;
 * - cache: the host directory itself is renamed onto the target and back (copied in and out when
 *   it is on another filesystem), so the next RUN sees what this one left.
 * Known limits: two RUNs at once would see each other's mounts (the sandbox runs one at a time),
 * and a RUN that deletes and recreates a mount's parent directory loses the restoration of the
 * image's content at the target (it is then reported, as in a real mount's absence).
 */

interface Placed {
  mount: RunMount;
  target: string;
  stash?: string;
  /** Directories created for the target, deepest first. */
  created: string[];
  /** The parent's times before we touched it, restored afterwards. */
  parentTimes?: { path: string; st: BigIntStats };
  cacheCopied?: boolean;
}

export interface PlacedMounts {
  /** In-root directories the placement touched and put back: compare them relaxed. */
  touched: Set<string>;
  remove(): void;
}

const depth = (p: string) => p.split('/').filter(Boolean).length;

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function restoreTimes(path: string, st: BigIntStats): void {
  // utimes takes seconds as doubles: microsecond precision, which is what `relaxed` tolerates.
  utimesSync(path, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9);
}

export function placeMounts(root: string, mounts: readonly RunMount[]): PlacedMounts {
  const hostRoot = root === '/' ? '' : root.replace(/\/+$/, '');
  const placed: Placed[] = [];
  const touched = new Set<string>();
  const remove = () => {
    const errors: unknown[] = [];
    for (const p of [...placed].reverse()) {
      try {
        if (p.mount.type === 'cache') {
          if (p.cacheCopied) {
            rmSync(p.mount.source, { recursive: true, force: true });
            cpSync(p.target, p.mount.source, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
            rmSync(p.target, { recursive: true, force: true });
          } else if (exists(p.target)) {
            renameSync(p.target, p.mount.source);
          } else {
            mkdirSync(p.mount.source, { recursive: true });
          }
        } else {
          rmSync(p.target, { recursive: true, force: true });
        }
        if (p.stash) renameSync(p.stash, p.target);
        for (const dir of p.created) {
          try {
            rmdirSync(dir);
          } catch {
            // The RUN put something there: it stays, and is part of the layer.
          }
        }
        if (p.parentTimes && exists(p.parentTimes.path)) restoreTimes(p.parentTimes.path, p.parentTimes.st);
      } catch (err) {
        errors.push(wrapError(err, `removing the RUN mount at ${p.mount.target}`));
      }
    }
    placed.length = 0;
    if (errors.length > 0) throw errors[0];
  };

  try {
    for (const mount of [...mounts].sort((a, b) => depth(a.target) - depth(b.target))) {
      const inRoot = posix.normalize(mount.target);
      if (inRoot === '/' || !inRoot.startsWith('/')) throw new GantryError('INVALID_ARGUMENT', `invalid RUN mount target "${mount.target}"`);
      const target = hostRoot + inRoot;
      const p: Placed = { mount, target, created: [] };
      const parent = dirname(target);
      for (let d = parent; d !== hostRoot && d !== '/' && !exists(d); d = dirname(d)) p.created.unshift(d);
      p.created.reverse();
      if (p.created.length > 0) {
        const top = p.created[p.created.length - 1]!;
        const above = dirname(top);
        p.parentTimes = { path: above, st: lstatSync(above, { bigint: true }) };
        touched.add(above.slice(hostRoot.length) || '/');
        mkdirSync(parent, { recursive: true, mode: 0o755 });
      } else {
        p.parentTimes = { path: parent, st: lstatSync(parent, { bigint: true }) };
        touched.add(parent.slice(hostRoot.length) || '/');
      }
      if (exists(target)) {
        p.stash = `${parent}/.gantry-mount-stash-${randomBytes(6).toString('hex')}`;
        renameSync(target, p.stash);
        touched.add(inRoot);
      }
      placed.push(p);
      if (mount.type === 'tmpfs') {
        mkdirSync(target, { mode: 0o1777 });
      } else if (mount.type === 'cache') {
        mkdirSync(mount.source, { recursive: true });
        try {
          renameSync(mount.source, target);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
          cpSync(mount.source, target, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
          p.cacheCopied = true;
        }
      } else if (statSync(mount.source).isDirectory()) {
        cpSync(mount.source, target, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
      } else {
        copyFileSync(mount.source, target);
      }
    }
  } catch (err) {
    try {
      remove();
    } catch {
      // the placement error is the one to report
    }
    throw wrapError(err, 'placing RUN mounts', 'SANDBOX_FAILED');
  }
  return { touched, remove };
}
