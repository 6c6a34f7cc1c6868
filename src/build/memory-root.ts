/**
 * A root held in memory for a step on a sparse root (path-root.ts): the image's paths are looked
 * up in its PathTree the first time a directory is entered, and what the step writes is kept as
 * metadata plus a reference to the content (the source host file, or a buffer). Nothing is
 * written to disk: the copy would otherwise write every byte once only to read it back for the
 * layer and delete it, and creating thousands of inodes is what costs on a busy disk.
 *
 * It behaves as the disk does where the copy and the layer depend on it: ENOENT, ENOTDIR, EEXIST
 * and EISDIR errors; a directory's mtime becomes "now" when an entry is added to or removed from
 * it; hard links share one node (same ino, nlink counted); chmod, chown and times set what the
 * layer will say. Symlinks are followed inside this root only (paths given here are already
 * resolved by resolveComponentsInRoot; this only matters for a path a later write re-pointed).
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { TreeNode } from '../fs/index.js';
import { resolveComponentsInRoot } from '../fs/unpack/index.js';
import { READ_WHOLE_MAX, type RootFsOps, type RootStats } from './root-fs-ops.js';

type Kind = TreeNode['type'];

class MemNode {
  /** Entries; undefined until first entered (then filled from `tree`). */
  kids?: Map<string, MemNode>;
  nlink = 1;
  size = 0;
  linkname?: string;
  data?: Buffer;
  /** A host file the content is read from when the layer is written. */
  host?: string;
  constructor(
    readonly type: Kind,
    public mode: number,
    public uid: number,
    public gid: number,
    public mtime: Date,
    readonly ino: number,
    public tree?: TreeNode,
  ) {}
}

function fsError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const text: Record<string, string> = {
    ENOENT: 'no such file or directory',
    ENOTDIR: 'not a directory',
    EEXIST: 'file already exists',
    EISDIR: 'illegal operation on a directory',
    EINVAL: 'invalid argument',
    EPERM: 'operation not permitted',
  };
  return Object.assign(new Error(`${code}: ${text[code] ?? code}, ${syscall} '${path}'`), { code, syscall, path });
}

function stats(n: MemNode): RootStats {
  const t = n.type;
  return {
    isDirectory: () => t === 'dir',
    isFile: () => t === 'file',
    isSymbolicLink: () => t === 'symlink',
    isFIFO: () => t === 'fifo',
    isCharacterDevice: () => t === 'char',
    isBlockDevice: () => t === 'block',
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    size: n.size,
    nlink: n.nlink,
    dev: 0,
    ino: n.ino,
    rdev: 0,
    mtime: n.mtime,
  };
}

export class MemoryRoot implements RootFsOps {
  readonly canChown = true;
  private nextIno = 1;
  private readonly top: MemNode;

  /** `root` is the (never created) host path the step's paths are under. */
  constructor(
    readonly root: string,
    tree: { root: TreeNode },
  ) {
    this.top = this.fromTree(tree.root);
  }

  private fromTree(t: TreeNode): MemNode {
    const n = new MemNode(t.type, t.type === 'symlink' ? 0o777 : t.mode & 0o7777, t.uid, t.gid, new Date(t.mtime * 1000), this.nextIno++, t.type === 'dir' ? t : undefined);
    if (t.type === 'symlink') {
      n.linkname = t.linkname ?? '';
      n.size = Buffer.byteLength(n.linkname);
    } else if (t.type === 'file' && t.content) {
      n.data = t.content;
      n.size = t.content.length;
    }
    return n;
  }

  private kids(dir: MemNode): Map<string, MemNode> {
    if (!dir.kids) {
      dir.kids = new Map();
      for (const [name, t] of dir.tree?.children ?? []) dir.kids.set(name, this.fromTree(t));
      dir.tree = undefined;
    }
    return dir.kids;
  }

  private comps(path: string): string[] {
    if (path === this.root) return [];
    if (!path.startsWith(this.root + '/')) throw new Error(`internal: ${path} is outside the in-memory root ${this.root}`);
    return path.slice(this.root.length + 1).split('/').filter((c) => c !== '' && c !== '.');
  }

  /** The node at `comps`, the last one not followed; `path` and `syscall` name errors. */
  private walk(comps: readonly string[], syscall: string, path: string): MemNode {
    let node = this.top;
    for (let i = 0; i < comps.length; i++) {
      if (node.type === 'symlink') node = this.followed(comps.slice(0, i), syscall, path);
      if (node.type !== 'dir') throw fsError('ENOTDIR', syscall, path);
      const next = this.kids(node).get(comps[i]!);
      if (!next) throw fsError('ENOENT', syscall, path);
      node = next;
    }
    return node;
  }

  /** The node a symlink at `comps` ends at. */
  private followed(comps: readonly string[], syscall: string, path: string): MemNode {
    const resolved = resolveComponentsInRoot(this.root, comps, { followFinal: true }, this);
    return this.walk(resolved, syscall, path);
  }

  private node(path: string, syscall: string, follow: boolean): MemNode {
    const comps = this.comps(path);
    const n = this.walk(comps, syscall, path);
    return follow && n.type === 'symlink' ? this.followed(comps, syscall, path) : n;
  }

  /** The directory an entry at `path` goes in, and its name. */
  private parent(path: string, syscall: string): [MemNode, string] {
    const comps = this.comps(path);
    const name = comps.pop();
    if (name === undefined) throw fsError('EEXIST', syscall, path);
    const dir = this.node(this.root + (comps.length ? '/' + comps.join('/') : ''), syscall, true);
    if (dir.type !== 'dir') throw fsError('ENOTDIR', syscall, path);
    return [dir, name];
  }

  private add(path: string, syscall: string, make: () => MemNode): MemNode {
    const [dir, name] = this.parent(path, syscall);
    const kids = this.kids(dir);
    if (kids.has(name)) throw fsError('EEXIST', syscall, path);
    const n = make();
    kids.set(name, n);
    dir.mtime = new Date();
    return n;
  }

  private newNode(type: Kind, mode: number): MemNode {
    return new MemNode(type, mode, 0, 0, new Date(), this.nextIno++);
  }

  lstat(path: string): RootStats {
    return stats(this.node(path, 'lstat', false));
  }

  readlink(path: string): string {
    const n = this.node(path, 'readlink', false);
    if (n.type !== 'symlink') throw fsError('EINVAL', 'readlink', path);
    return n.linkname ?? '';
  }

  readFile(path: string): Buffer {
    const n = this.node(path, 'open', true);
    if (n.type === 'dir') throw fsError('EISDIR', 'read', path);
    if (n.data) return n.data;
    return n.host !== undefined ? readFileSync(n.host) : Buffer.alloc(0);
  }

  mkdir(path: string): void {
    const n = this.add(path, 'mkdir', () => this.newNode('dir', 0o755));
    n.kids = new Map();
  }

  chmod(path: string, mode: number): void {
    this.node(path, 'chmod', true).mode = mode & 0o7777;
  }

  lchown(path: string, uid: number, gid: number): void {
    const n = this.node(path, 'lchown', false);
    n.uid = uid;
    n.gid = gid;
  }

  utimes(path: string, _atime: Date, mtime: Date): void {
    this.node(path, 'utime', true).mtime = mtime;
  }

  lutimes(path: string, _atime: Date, mtime: Date): void {
    this.node(path, 'lutime', false).mtime = mtime;
  }

  private setContent(path: string, syscall: string, content: { host?: string; data?: Buffer }, size: number, mode: number): void {
    let n: MemNode | undefined;
    try {
      n = this.node(path, syscall, true);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (n?.type === 'dir') throw fsError('EISDIR', syscall, path);
    // An existing file is rewritten in place (same inode, links included), as open(O_TRUNC) does.
    if (!n) n = this.add(path, syscall, () => this.newNode('file', mode));
    else n.mtime = new Date();
    n.host = content.host;
    n.data = content.data;
    n.size = size;
  }

  copyFile(src: string, dest: string): void {
    const st = statSync(src);
    this.setContent(dest, 'copyfile', { host: src }, st.size, st.mode & 0o7777);
  }

  writeFile(path: string, data: Buffer): void {
    this.setContent(path, 'open', { data }, data.length, 0o644);
  }

  link(existing: string, path: string): void {
    const n = this.node(existing, 'link', false);
    if (n.type === 'dir') throw fsError('EPERM', 'link', existing);
    this.add(path, 'link', () => n);
    n.nlink++;
  }

  symlink(target: string, path: string): void {
    const n = this.add(path, 'symlink', () => this.newNode('symlink', 0o777));
    n.linkname = target;
    n.size = Buffer.byteLength(target);
  }

  private remove(path: string, syscall: string, recursive: boolean): void {
    const [dir, name] = this.parent(path, syscall);
    const kids = this.kids(dir);
    const n = kids.get(name);
    if (!n) throw fsError('ENOENT', syscall, path);
    if (n.type === 'dir' && !recursive) throw fsError('EISDIR', syscall, path);
    kids.delete(name);
    dir.mtime = new Date();
    const unref = (x: MemNode) => {
      x.nlink--;
      for (const k of x.kids?.values() ?? []) unref(k);
    };
    unref(n);
  }

  unlink(path: string): void {
    this.remove(path, 'unlink', false);
  }

  rmTree(path: string): void {
    try {
      this.remove(path, 'rm', true);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
  }

  body(path: string, st: RootStats): Buffer | Readable {
    const n = this.node(path, 'open', true);
    if (n.data) return n.data;
    if (n.host === undefined || st.size === 0) return Buffer.alloc(0);
    // Read now, from the source: a change since the copy shows as a size mismatch in the layer.
    return st.size <= READ_WHOLE_MAX ? readFileSync(n.host) : createReadStream(n.host);
  }
}
