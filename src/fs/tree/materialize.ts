/**
 * A sparse root: only the paths a step looks at, created on disk from a PathTree with the
 * image's metadata (type, mode, owner, mtime, symlink targets). A COPY resolving its destination
 * in it sees exactly what it would see in the fully unpacked image, and the layer it writes
 * (written paths plus their parent directories) comes out the same. Regular files are created
 * empty unless the tree kept their content: no step reads them, it only replaces them.
 */
import { chmodSync, lchownSync, lutimesSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PathTree, TreeNode } from './path-tree.js';

const canChown = typeof process.getuid === 'function' && process.getuid() === 0;

export class SparseRoot {
  private readonly made = new Map<string, TreeNode>();
  /** Directory times are set last: creating children changes them. */
  private readonly dirs: Array<[string, number]> = [];

  constructor(
    readonly dir: string,
    private readonly tree: PathTree,
  ) {}

  /** Owners as the image says, for a process that cannot chown (the disk then says ours). */
  ownerOf(rel: string): { uid: number; gid: number } | undefined {
    if (canChown) return undefined;
    const n = this.made.get(rel);
    return n ? { uid: n.uid, gid: n.gid } : undefined;
  }

  /** Creates every existing component met while resolving `path` (symlink targets included). */
  materialize(path: string, followFinal: boolean): void {
    this.tree.resolve(path, followFinal, (comps, node) => this.make(comps, node));
  }

  private make(comps: string[], node: TreeNode): void {
    const rel = comps.join('/');
    if (this.made.has(rel)) return;
    // Parents were met first on the way here (resolution walks from the root).
    for (let i = 1; i < comps.length; i++) {
      const p = comps.slice(0, i);
      if (!this.made.has(p.join('/'))) this.make(p, this.tree.get(p)!);
    }
    const host = join(this.dir, ...comps);
    switch (node.type) {
      case 'dir':
        mkdirSync(host);
        chmodSync(host, node.mode & 0o7777);
        this.dirs.push([host, node.mtime]);
        break;
      case 'symlink':
        symlinkSync(node.linkname ?? '', host);
        break;
      default:
        writeFileSync(host, node.content ?? Buffer.alloc(0));
        chmodSync(host, node.mode & 0o7777);
    }
    if (canChown) lchownSync(host, node.uid, node.gid);
    if (node.type !== 'dir') lutimesSync(host, node.mtime, node.mtime);
    this.made.set(rel, node);
  }

  /** Sets directory times, deepest first; call once everything is materialized. */
  finish(): void {
    for (const [host, t] of [...this.dirs].reverse()) lutimesSync(host, t, t);
    this.dirs.length = 0;
  }
}
