import { execFile } from 'node:child_process';
import { chmod, chown, lchown, lstat, mkdir, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GantryError } from '../util/errors.js';
import { isWhiteoutStat, type LayerStack, type Resolution } from './layer-stack.js';

/**
 * Mount points for a RUN without touching the image.
 *
 * Creating `/proc`, `/etc/resolv.conf` or a cache-mount target in the merged tree would write
 * them into the upperdir and bump their parents' times (spike Q1/Q4c), so each missing mount
 * point is created in a per-RUN *skeleton* directory mounted as the topmost lowerdir: the
 * merged view shows it, the upperdir never does. Skeleton directories that shadow an existing
 * image directory copy its owner, mode and times, or they would mask them in the merged view
 * (and in any copy-up the RUN triggers).
 */

export type MountpointKind = 'dir' | 'file';

/** Skeleton directories created so far (in-image path -> metadata to restore at the end). */
export class Skeleton {
  private readonly copied = new Map<string, { atime: Date; mtime: Date }>();
  private readonly made = new Set<string>();

  constructor(
    readonly dir: string,
    private readonly stack: LayerStack,
  ) {}

  /**
   * Makes `target` (absolute, in the image) exist in the merged view as a `kind`, resolving
   * image symlinks inside the root. Returns the symlink-free in-image path to mount on, or
   * undefined when the upperdir hides the place (a whiteout or opaque directory above the
   * skeleton), where no skeleton entry can show through.
   */
  async ensure(target: string, kind: MountpointKind): Promise<string | undefined> {
    const res = await this.stack.resolve(target, { followLast: true });
    if (res.missing.length === 0) {
      const leafKind = res.leaf?.kind ?? 'dir';
      if ((kind === 'dir') !== (leafKind === 'dir')) {
        throw new GantryError('INVALID_ARGUMENT', `cannot mount a ${kind === 'dir' ? 'directory' : 'file'} on ${target}: the image has a ${leafKind === 'dir' ? 'directory' : 'file'} there`);
      }
      return res.path;
    }
    if (await this.hiddenByUpper(res)) return undefined;
    for (const d of res.dirs.slice(1)) await this.copyDir(d.rel, d.stat!);
    let rel = res.dirs[res.dirs.length - 1].rel;
    for (let i = 0; i < res.missing.length; i++) {
      rel = rel === '' ? res.missing[i] : `${rel}/${res.missing[i]}`;
      if (this.made.has(rel)) continue;
      this.made.add(rel);
      const host = join(this.dir, rel);
      if (i < res.missing.length - 1 || kind === 'dir') {
        await mkdir(host);
        await chmod(host, 0o755);
      } else {
        await writeFile(host, '', { mode: 0o644 });
      }
    }
    return res.path;
  }

  /** Restores the copied directories' times, which creating their children bumped. */
  async finish(): Promise<void> {
    const deepestFirst = [...this.copied.entries()].sort((a, b) => b[0].split('/').length - a[0].split('/').length);
    for (const [rel, t] of deepestFirst) await utimes(join(this.dir, rel), t.atime, t.mtime);
  }

  private async copyDir(rel: string, st: import('node:fs').Stats): Promise<void> {
    if (this.copied.has(rel) || this.made.has(rel)) return;
    const host = join(this.dir, rel);
    await mkdir(host);
    await chown(host, st.uid, st.gid);
    await chmod(host, st.mode & 0o7777);
    this.copied.set(rel, { atime: st.atime, mtime: st.mtime });
  }

  private async hiddenByUpper(res: Resolution): Promise<boolean> {
    const deepest = res.dirs[res.dirs.length - 1];
    // Any upper copy of an existing directory on the way that is opaque hides the skeleton below it.
    for (const d of res.dirs.slice(1)) {
      if (d.layers[0] === 0 && (await this.stack.isOpaque(0, d.rel))) return true;
    }
    const first = join(this.stack.layers[0], deepest.rel, res.missing[0]);
    try {
      return isWhiteoutStat(await lstat(first));
    } catch {
      return false;
    }
  }
}

/**
 * Creates a missing directory (the RUN's working directory) in the upperdir, as a real change of
 * the layer, the way BuildKit creates a missing cwd: root-owned, 0755. Existing ancestors are
 * copied up with their metadata first, so the merged view keeps showing them unchanged.
 */
export async function createDirInUpper(stack: LayerStack, path: string, opaqueXattr = 'trusted.overlay.opaque'): Promise<string> {
  const res = await stack.resolve(path, { followLast: true });
  if (res.missing.length === 0) {
    if (res.leaf && res.leaf.kind !== 'dir') {
      throw new GantryError('INVALID_ARGUMENT', `the working directory ${path} is not a directory in the image`);
    }
    return res.path;
  }
  const upper = stack.layers[0];
  const restore: Array<[string, Date, Date]> = [];
  for (const d of res.dirs.slice(1)) {
    if (d.layers[0] === 0) continue;
    const host = join(upper, d.rel);
    await mkdir(host);
    await lchown(host, d.stat!.uid, d.stat!.gid);
    await chmod(host, d.stat!.mode & 0o7777);
    restore.push([host, d.stat!.atime, d.stat!.mtime]);
  }
  let rel = res.dirs[res.dirs.length - 1].rel;
  for (const name of res.missing) {
    rel = rel === '' ? name : `${rel}/${name}`;
    const host = join(upper, rel);
    let replacedWhiteout = false;
    try {
      if (isWhiteoutStat(await lstat(host))) {
        await unlink(host);
        replacedWhiteout = true;
      }
    } catch {
      // absent: the usual case
    }
    await mkdir(host);
    await chmod(host, 0o755);
    // A directory replacing a deleted one must not show the old contents from below.
    if (replacedWhiteout) await setOpaque(host, opaqueXattr);
  }
  for (const [host, atime, mtime] of restore.reverse()) await utimes(host, atime, mtime);
  return res.path;
}

function setOpaque(host: string, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('setfattr', ['-n', name, '-v', 'y', '--', host], (err, _o, stderr) => {
      if (err) reject(new GantryError('IO', `marking ${host} opaque failed: ${String(stderr).trim() || err.message}`, { hint: 'install the `attr` package' }));
      else resolve();
    });
  });
}
