import { GantryError } from '../../util/errors.js';

/** Linux limits: longer names fail deep inside a syscall with a less helpful ENAMETOOLONG. */
export const NAME_MAX = 255;
export const PATH_MAX = 4095;

/**
 * Turns a tar entry name into path components relative to the root: `./a`, `a/`, `/a` all give
 * ["a"]. `..` is resolved lexically (as Go's filepath.Clean does for containerd) and a name that
 * would climb above the root is refused instead of clamped: a layer that tries is hostile or broken,
 * and silently writing somewhere else than it says hides that.
 */
export function normalizeEntryName(name: string): string[] {
  if (name.includes('\0')) {
    throw new GantryError('ARCHIVE_INVALID', 'name contains a NUL byte', { hint: 'the layer tar is corrupt' });
  }
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) {
        throw new GantryError('UNSAFE_PATH', 'path escapes the root', {
          hint: 'the layer is hostile or corrupt: its entries must stay inside the image filesystem',
        });
      }
      out.pop();
      continue;
    }
    if (Buffer.byteLength(part) > NAME_MAX) {
      throw new GantryError('ARCHIVE_INVALID', `path component longer than ${NAME_MAX} bytes`, {
        hint: 'Linux cannot create such a file; the layer is corrupt or hostile',
      });
    }
    out.push(part);
  }
  return out;
}

export function inRootPath(components: readonly string[]): string {
  return '/' + components.join('/');
}

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

export type WhiteoutKind =
  | { kind: 'none' }
  /** `.wh.<name>`: delete <name> from lower layers. */
  | { kind: 'whiteout'; target: string }
  /** `.wh..wh..opq`: hide everything lower layers put in the directory. */
  | { kind: 'opaque' }
  /** aufs bookkeeping (`.wh..wh.plnk/...`, `.wh..wh.aufs`): never materialised, no effect. */
  | { kind: 'meta' };

/** Classifies an entry by its normalised components (OCI image-spec layer.md, "Whiteouts"). */
export function classifyWhiteout(components: readonly string[]): WhiteoutKind {
  for (let i = 0; i < components.length - 1; i++) {
    if (components[i]!.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  }
  const base = components.at(-1);
  if (base === undefined || !base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none' };
  if (base === OPAQUE_MARKER) return { kind: 'opaque' };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') {
    throw new GantryError('ARCHIVE_INVALID', `whiteout "${base}" names no file`, { hint: 'the layer tar is corrupt' });
  }
  return { kind: 'whiteout', target };
}
