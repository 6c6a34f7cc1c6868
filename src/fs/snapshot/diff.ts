import { isDir, sameMetadata, type FileMeta, type Snapshot } from './walk.js';

export type ChangeKind = 'added' | 'changed' | 'deleted';

export interface Change {
  /** In-root absolute path. */
  path: string;
  kind: ChangeKind;
}

export interface DiffSnapshotOptions {
  /**
   * Paths compared on type, permissions, owner and link target only: directories the sandbox
   * itself touched and put back (the parent of a secret it placed and removed, a target it moved
   * aside and restored), whose ctime it cannot restore.
   */
  relaxed?: ReadonlySet<string>;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** Compares paths component by component, by UTF-8 bytes: a parent sorts before its children. */
export function comparePaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    if (pa[i] === pb[i]) continue;
    return Buffer.compare(Buffer.from(pa[i]!, 'utf8'), Buffer.from(pb[i]!, 'utf8'));
  }
  return pa.length - pb.length;
}

function contentDiffers(a: FileMeta, b: FileMeta): boolean {
  return a.hash !== undefined && b.hash !== undefined && a.hash !== b.hash;
}

/**
 * What changed between two snapshots of the same root, sorted by path. A deleted directory is one
 * change, not one per child; so is a directory replaced by a file (the new entry replaces the
 * old tree when the layer is applied).
 */
export function diffSnapshots(before: Snapshot, after: Snapshot, opts: DiffSnapshotOptions = {}): Change[] {
  const mode = after.mode;
  const out: Change[] = [];
  for (const [path, meta] of after.files) {
    const old = before.files.get(path);
    if (!old) {
      out.push({ path, kind: 'added' });
    } else if (!sameMetadata(old, meta, mode, opts.relaxed?.has(path)) || (mode !== 'time' && contentDiffers(old, meta))) {
      out.push({ path, kind: 'changed' });
    }
  }
  for (const path of before.files.keys()) {
    if (after.files.has(path)) continue;
    // Covered by a deleted ancestor, or by an ancestor directory that is now something else.
    let covered = false;
    for (let p = parentOf(path); p !== '/'; p = parentOf(p)) {
      const then = before.files.get(p);
      const now = after.files.get(p);
      if (!now || (then && isDir(then) && !isDir(now))) {
        covered = true;
        break;
      }
    }
    if (!covered) out.push({ path, kind: 'deleted' });
  }
  return out.sort((a, b) => comparePaths(a.path, b.path));
}
