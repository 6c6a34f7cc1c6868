/**
 * The metadata of an image's file system without its contents: layers' entry headers applied in
 * order with the unpacker's rules (whiteouts and opaque directories hide lower layers, a
 * directory over a directory merges, anything else replaces, parents resolve through symlinks
 * inside the root, missing parents appear as 0755 root-owned directories). A step that only needs
 * to know what is at a few paths (COPY, WORKDIR) asks this tree instead of unpacking the image.
 */
import { posix } from 'node:path';
import { GantryError } from '../../util/errors.js';
import { classifyWhiteout, normalizeEntryName } from '../unpack/entry-name.js';
import { MAX_SYMLINKS } from '../unpack/resolve-in-root.js';

export type IndexEntryType = 'dir' | 'file' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** One layer entry as the index keeps it (a tar header minus size, devices and xattrs). */
export interface IndexEntry {
  name: string;
  type: IndexEntryType;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Symlink target, or the archive path a hard link points to. */
  linkname?: string;
  /** Content, kept only for the few files a step may need to read (see INDEXED_CONTENT). */
  content?: Buffer;
}

/** Files whose content the index keeps: COPY --chown and USER names are looked up in them. */
export const INDEXED_CONTENT: ReadonlySet<string> = new Set(['etc/passwd', 'etc/group']);

/** Largest content kept for those files (anything bigger is left out: the step then unpacks). */
export const INDEXED_CONTENT_MAX = 1 << 20;

export interface LayerIndex {
  entries: IndexEntry[];
}

export class TreeNode {
  children?: Map<string, TreeNode>;
  constructor(
    public type: Exclude<IndexEntryType, 'hardlink'>,
    public mode: number,
    public uid: number,
    public gid: number,
    public mtime: number,
    public linkname?: string,
    public content?: Buffer,
  ) {
    if (type === 'dir') this.children = new Map();
  }
}

export class PathTree {
  readonly root = new TreeNode('dir', 0o755, 0, 0, 0);

  /** The node at resolved components (no symlink is followed), or undefined. */
  get(comps: readonly string[]): TreeNode | undefined {
    let node: TreeNode | undefined = this.root;
    for (const c of comps) {
      node = node.children?.get(c);
      if (!node) return undefined;
    }
    return node;
  }

  /**
   * Resolves `path` as resolveComponentsInRoot does on disk (symlinks followed inside the root,
   * `..` stopping at it); `visit` sees every existing node met, in order, with its components.
   */
  resolve(path: string | readonly string[], followFinal: boolean, visit?: (comps: string[], node: TreeNode) => void): string[] {
    return this.walk(path, followFinal, visit).comps;
  }

  /** resolve(), also giving the node the path ends at (undefined when it does not exist). */
  walk(path: string | readonly string[], followFinal: boolean, visit?: (comps: string[], node: TreeNode) => void): { comps: string[]; node: TreeNode | undefined } {
    const pending = (typeof path === 'string' ? path.split('/') : [...path]).reverse();
    const resolved: string[] = [];
    // nodes[i] is the node at resolved[0..i): the walk never restarts from the root per component.
    const nodes: Array<TreeNode | undefined> = [this.root];
    let followed = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (resolved.length > 0) {
          resolved.pop();
          nodes.pop();
        }
        continue;
      }
      const node = nodes[nodes.length - 1]?.children?.get(part);
      if (node && visit) visit([...resolved, part], node);
      if ((pending.length === 0 && !followFinal) || node?.type !== 'symlink') {
        resolved.push(part);
        nodes.push(node);
        continue;
      }
      if (++followed > MAX_SYMLINKS) {
        throw new GantryError('ARCHIVE_INVALID', `too many levels of symbolic links (more than ${MAX_SYMLINKS})`, { errno: 'ELOOP' });
      }
      const target = node.linkname ?? '';
      if (target.startsWith('/')) {
        resolved.length = 0;
        nodes.length = 1;
      }
      for (const t of target.split('/').reverse()) pending.push(t);
    }
    return { comps: resolved, node: nodes[nodes.length - 1] };
  }

  /** Applies one layer on top of what the tree holds. Throws where the unpacker would. */
  apply(layer: LayerIndex): void {
    // Whiteouts only hide lower layers, wherever the tar lists them: apply them first.
    for (const e of layer.entries) {
      if (!e.name.includes('.wh.')) continue;
      const comps = entryComponents(e.name);
      const w = classifyWhiteout(comps);
      if (w.kind === 'none' || w.kind === 'meta') continue;
      const parent = this.parentOf(comps);
      if (!parent?.children) continue;
      if (w.kind === 'opaque') parent.children.clear();
      else parent.children.delete(w.target);
    }
    for (const e of layer.entries) {
      const comps = entryComponents(e.name);
      if (e.name.includes('.wh.') && classifyWhiteout(comps).kind !== 'none') continue;
      this.put(comps, e);
    }
  }

  /** The existing directory holding `comps` (parents resolved through symlinks), if any. */
  private parentOf(comps: readonly string[]): TreeNode | undefined {
    // Most parents are plain directories: walk the maps, resolving only when a symlink is met.
    let node = this.root;
    for (let i = 0; i < comps.length - 1; i++) {
      const next = node.children!.get(comps[i]!);
      if (next?.type !== 'dir') return this.walk(comps.slice(0, -1), true).node;
      node = next;
    }
    return node;
  }

  private put(comps: string[], e: IndexEntry): void {
    if (comps.length === 0) {
      if (e.type !== 'dir') throw new GantryError('ARCHIVE_INVALID', 'the root can only be a directory');
      Object.assign(this.root, { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime });
      return;
    }
    let parent = this.parentOf(comps);
    if (parent?.type !== 'dir') {
      // Missing parents are created as the unpacker creates them.
      const want = this.resolve(comps.slice(0, -1), true);
      parent = this.root;
      for (const c of want) {
        let next: TreeNode | undefined = parent.children!.get(c);
        if (!next) {
          next = new TreeNode('dir', 0o755, 0, 0, 0);
          parent.children!.set(c, next);
        } else if (next.type !== 'dir') {
          throw new GantryError('ARCHIVE_INVALID', `parent /${want.join('/')} is not a directory`);
        }
        parent = next;
      }
    }
    const name = comps.at(-1)!;
    const existing = parent.children!.get(name);
    if (e.type === 'dir' && existing?.type === 'dir') {
      Object.assign(existing, { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime });
      return;
    }
    if (e.type === 'hardlink') {
      const target = this.walk(normalizeEntryName(e.linkname ?? ''), false).node;
      if (!target || target.type === 'dir') return;
      parent.children!.set(name, new TreeNode(target.type, target.mode, target.uid, target.gid, target.mtime, target.linkname, target.content));
      return;
    }
    parent.children!.set(name, new TreeNode(e.type, e.mode, e.uid, e.gid, e.mtime, e.linkname, e.content));
  }
}

const UNUSUAL = /(^|\/)\.\.?(\/|$)|\/\/|\0/;

/** An entry name's components; the unpacker's full checks only for names that need them. */
function entryComponents(name: string): string[] {
  if (UNUSUAL.test(name)) return normalizeEntryName(name);
  const trimmed = name.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? [] : trimmed.split('/');
}

/** Whether a layer entry's content belongs in the index. */
export function keepsContent(name: string): boolean {
  return INDEXED_CONTENT.has(posix.normalize('/' + name).slice(1));
}
