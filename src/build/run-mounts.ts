/**
 * `RUN --mount=…` turned into the sandbox's mounts, with BuildKit's semantics:
 * - cache: a directory under the build's cache dir that persists between builds, keyed by `id`
 *   (default: the target); created with uid/gid/mode (default 0:0 0755); `sharing=shared` lets
 *   RUNs use it at once, `locked` makes them wait for each other, `private` gives a RUN that finds
 *   it busy a fresh directory of its own;
 * - secret: the value copied into a private temp file (mode 0400 and 0:0 unless given) bound
 *   read-only on the target (default /run/secrets/<id>), and/or exported as `env=`; a missing
 *   secret is skipped unless `required`;
 * - bind: a path of the build context (after .dockerignore), a stage or an image; read-only by
 *   default, and `rw` writes go to a scratch copy that is thrown away;
 * - tmpfs: a fresh tmpfs; ssh: not supported.
 * Nothing of a mount reaches the layer: the sandbox puts mount points in a skeleton layer that is
 * never diffed, and the sources live outside the rootfs.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import type { MountIdentity } from '../cache/index.js';
import type { RunMount as DockerfileMount } from '../dockerfile/index.js';
import type { RunMount } from '../run/index.js';
import { GantryError } from '../util/errors.js';
import { copyItem, RootWriter, scratchDir } from './copy.js';
import type { RunContext } from './run-context.js';
import { cleanSourcePath, lstatInTree, type SourceTree } from './sources.js';

export interface PreparedMounts {
  mounts: RunMount[];
  /** `KEY=value` entries of secrets with `env=`. */
  env: string[];
  /** Secret values, to be kept out of logged output. */
  secrets: Buffer[];
  /** Releases locks and removes scratch copies and secret files. */
  release(): Promise<void>;
}

export interface MountInputs {
  ctx: RunContext;
  /** Absolute working directory of the RUN: relative targets are below it (BuildKit). */
  cwd: string;
  /** Per-RUN scratch directory (0700), removed by the caller. */
  scratch: string;
  now: Date;
  /** The tree a bind mount reads: the context when `from` is undefined. */
  tree(from: string | undefined): Promise<SourceTree>;
}

/**
 * Names the content a bind mount reads, for the cache key: `from` undefined = the build context.
 * Undefined when it cannot be named (a stage without a key, an image that does not resolve).
 */
export type BindDigest = (from: string | undefined, source: string) => Promise<string | undefined>;

/**
 * The cache-key identity of a RUN's mounts: every option as written, plus for a bind mount the
 * digest of what it exposes, as BuildKit keys a mount's input by the content under its selector
 * (read-only binds and rw binds alike: rw writes are thrown away). Undefined when a bind's content
 * cannot be named: the RUN then stays uncached.
 */
export async function mountIdentities(specs: readonly DockerfileMount[], bindDigest: BindDigest): Promise<MountIdentity[] | undefined> {
  const out: MountIdentity[] = [];
  for (const m of specs) {
    const given = { target: m.target, id: m.id, source: m.source, from: m.from, sharing: m.sharing, mode: m.mode, uid: m.uid, gid: m.gid, env: m.env, size: m.size };
    const id: MountIdentity = { type: m.type, readOnly: m.readOnly, required: m.required, ...(Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as Partial<MountIdentity>) };
    if (m.type === 'bind') {
      const digest = await bindDigest(m.from === '' ? undefined : m.from, m.source ?? '/');
      if (digest === undefined) return undefined;
      id.digest = digest;
    }
    out.push(id);
  }
  return out;
}

function targetOf(m: DockerfileMount, cwd: string): string {
  const t = m.target ?? '';
  return posix.isAbsolute(t) ? posix.normalize(t) : posix.join(cwd, t);
}

/** A cache id as a directory name: readable prefix plus a hash, so ids never collide or escape. */
export function cacheDirName(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 40);
  return `${safe || 'cache'}-${createHash('sha256').update(id).digest('hex').slice(0, 16)}`;
}

async function makeOwnedDir(dir: string, m: DockerfileMount): Promise<void> {
  await mkdir(dir);
  await chown(dir, m.uid ?? 0, m.gid ?? 0);
  await chmod(dir, m.mode ?? 0o755);
}

export async function prepareMounts(specs: readonly DockerfileMount[], inp: MountInputs): Promise<PreparedMounts> {
  const out: PreparedMounts = { mounts: [], env: [], secrets: [], release: async () => {} };
  const releases: Array<() => void | Promise<void>> = [];
  out.release = async () => {
    for (const r of releases.reverse()) await r();
  };
  try {
    for (const m of specs) await prepareOne(m, inp, out, releases);
  } catch (err) {
    await out.release();
    throw err;
  }
  return out;
}

async function prepareOne(m: DockerfileMount, inp: MountInputs, out: PreparedMounts, releases: Array<() => void | Promise<void>>): Promise<void> {
  const { ctx } = inp;
  switch (m.type) {
    case 'ssh':
      throw new GantryError('UNSUPPORTED', 'RUN --mount=type=ssh is not supported yet', {
        hint: 'use a secret mount (--mount=type=secret) for a deploy key, or fetch private sources before the build',
      });
    case 'tmpfs': {
      const t: RunMount = { type: 'tmpfs', target: targetOf(m, inp.cwd) };
      if (m.size !== undefined) t.size = m.size;
      out.mounts.push(t);
      return;
    }
    case 'cache': {
      if (m.from !== undefined) {
        throw new GantryError('UNSUPPORTED', 'RUN --mount=type=cache,from=… is not supported yet', { hint: 'leave out from= (the cache starts empty)' });
      }
      const target = targetOf(m, inp.cwd);
      const id = m.id ?? target;
      await mkdir(ctx.opts.cacheDir, { recursive: true, mode: 0o700 });
      let dir = join(ctx.opts.cacheDir, cacheDirName(id));
      if (!(await stat(dir).catch(() => undefined))) {
        await makeOwnedDir(dir, m).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
      }
      const sharing = m.sharing ?? 'shared';
      if (sharing === 'locked') {
        const before = ctx.locks.get(dir) ?? Promise.resolve();
        let unlock!: () => void;
        const mine = new Promise<void>((resolve) => (unlock = resolve));
        const tail = before.then(() => mine);
        ctx.locks.set(dir, tail);
        await before;
        const key = dir;
        releases.push(() => {
          unlock();
          if (ctx.locks.get(key) === tail) ctx.locks.delete(key);
        });
      } else if (sharing === 'private' && (ctx.inUse.get(dir) ?? 0) > 0) {
        dir = join(inp.scratch, `cache-${out.mounts.length}`);
        await makeOwnedDir(dir, m);
      }
      const used = dir;
      ctx.inUse.set(used, (ctx.inUse.get(used) ?? 0) + 1);
      releases.push(() => {
        const n = (ctx.inUse.get(used) ?? 1) - 1;
        if (n <= 0) ctx.inUse.delete(used);
        else ctx.inUse.set(used, n);
      });
      out.mounts.push(m.readOnly ? { type: 'bind', source: dir, target, readonly: true } : { type: 'cache', source: dir, target });
      return;
    }
    case 'secret': {
      const id = m.id ?? '';
      const value = await ctx.secretValue(id);
      if (value === undefined) {
        if (m.required) {
          throw new GantryError('NOT_FOUND', `secret ${id} is required but was not provided`, { hint: `pass it with --secret id=${id},src=FILE (or env=VAR)` });
        }
        return;
      }
      out.secrets.push(value);
      if (m.env !== undefined) out.env.push(`${m.env}=${value.toString('utf8')}`);
      if (m.target === undefined) return;
      const dir = await mkdtemp(join(inp.scratch, 'secret-'));
      const file = join(dir, 'value');
      await writeFile(file, value, { mode: 0o600 });
      await chown(file, m.uid ?? 0, m.gid ?? 0);
      await chmod(file, m.mode ?? 0o400);
      releases.push(() => rm(dir, { recursive: true, force: true }));
      out.mounts.push({ type: 'bind', source: file, target: targetOf(m, inp.cwd), readonly: true });
      return;
    }
    case 'bind': {
      const tree = await inp.tree(m.from);
      const rel = cleanSourcePath(m.source ?? '/');
      const entry = await lstatInTree(tree, rel, true);
      if (!entry) {
        throw new GantryError('NOT_FOUND', `RUN --mount=type=bind: "/${rel}" not found in ${tree.name}`, { hint: 'check source= (a path inside the context, stage or image)' });
      }
      const target = targetOf(m, inp.cwd);
      const filtered = tree.ignore !== undefined && tree.ignore.patterns.length > 0;
      if (m.readOnly && !filtered) {
        out.mounts.push({ type: 'bind', source: entry.host, target, readonly: true });
        return;
      }
      // A writable bind (or one the .dockerignore filters) gets its own copy.
      const dir = await scratchDir(inp.scratch, 'bind');
      const w = new RootWriter(dir);
      const name = basename(entry.host) || 'root';
      const isDir = entry.stat.isDirectory();
      await copyItem(w, { kind: 'tree', tree, entry, name }, isDir ? '/' : `/${name}`, { now: inp.now });
      await w.finish();
      out.mounts.push({ type: 'bind', source: isDir ? dir : join(dir, name), target, readonly: m.readOnly });
      return;
    }
  }
}
