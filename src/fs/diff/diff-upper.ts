import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { LayerEntry, TarHeader } from '../../archive/index.js';
import { wrapError } from '../../util/errors.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { statEntry } from './stat-entry.js';
import { isOpaqueMarked, isOverlayXattr, isXwhiteoutMarked, readXattrs, type XattrMap } from './getfattr.js';

/**
 * Turns an overlayfs upperdir into the tar entries of an OCI layer: exactly what the RUN changed.
 *
 * The upperdir must come from a mount with `redirect_dir=off` and `metacopy=off` (the ns sandbox
 * mounts that way): a redirected rename or a metadata-only copy-up would leave entries that only
 * make sense together with the lower layers. Overlay's own bookkeeping (`trusted.overlay.*`,
 * `user.overlay.*`) never reaches the layer.
 *
 * Order: depth first, siblings sorted by their UTF-8 bytes, a directory before its contents and
 * its `.wh..wh..opq` marker right after it, so any unpacker applies the opaque marker before the
 * directory's new children.
 */

export interface DiffOptions {
  /** Skip this in-image path (`/etc/x`), and everything below it when it is a directory. */
  ignore?: (path: string) => boolean;
  logger?: Logger;
  signal?: AbortSignal;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

export { deviceNumbers } from './stat-entry.js';

function isWhiteout(st: Stats, attrs: Record<string, Buffer> | undefined): boolean {
  if (st.isCharacterDevice() && st.rdev === 0) return true;
  return st.isFile() && st.size === 0 && isXwhiteoutMarked(attrs);
}

function keptXattrs(attrs: Record<string, Buffer> | undefined): Record<string, Buffer> | undefined {
  if (!attrs) return undefined;
  const kept = Object.entries(attrs).filter(([name]) => !isOverlayXattr(name));
  return kept.length > 0 ? Object.fromEntries(kept) : undefined;
}

const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

export async function* diffUpperDir(upperDir: string, opts: DiffOptions = {}): AsyncGenerator<LayerEntry> {
  const logger = opts.logger ?? silentLogger;
  let xattrs: XattrMap;
  try {
    xattrs = await readXattrs([upperDir], { recursive: true, signal: opts.signal });
  } catch (err) {
    throw wrapError(err, `reading extended attributes under ${upperDir}`);
  }
  // First archive path of each multiply-linked inode: later names become hard links to it.
  const firstLink = new Map<string, string>();

  function headerFor(name: string, st: Stats, attrs: Record<string, Buffer> | undefined): TarHeader {
    return { name, type: 'file', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtimeMs / 1000, xattrs: keptXattrs(attrs) };
  }

  async function* walk(hostDir: string, archiveDir: string): AsyncGenerator<LayerEntry> {
    // Stat first, then sort by the name each entry gets in the archive (a whiteout is named
    // `.wh.<name>`), so the layer itself is sorted.
    const items: Array<{ entry: string; host: string; st: Stats; attrs: Record<string, Buffer> | undefined; base: string; whiteout: boolean }> = [];
    try {
      for (const entry of readdirSync(hostDir)) {
        const host = join(hostDir, entry);
        const st = lstatSync(host);
        const attrs = xattrs.get(host);
        const whiteout = isWhiteout(st, attrs);
        items.push({ entry, host, st, attrs, whiteout, base: whiteout ? WHITEOUT_PREFIX + entry : entry });
      }
    } catch (err) {
      throw wrapError(err, `listing ${hostDir}`);
    }
    items.sort((a, b) => byBytes(a.base, b.base));
    for (const { entry, host, st, attrs, base, whiteout } of items) {
      if (opts.signal?.aborted) throw wrapError(opts.signal.reason ?? new Error('aborted'), 'diffing the upper directory', 'ABORTED');
      const name = archiveDir === '' ? base : `${archiveDir}/${base}`;
      if (opts.ignore?.(archiveDir === '' ? `/${entry}` : `/${archiveDir}/${entry}`)) continue;
      if (whiteout) {
        yield { header: { name, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: st.mtimeMs / 1000 } };
        continue;
      }
      const header = headerFor(name, st, attrs);
      if (st.isDirectory()) {
        header.type = 'dir';
        yield { header };
        if (isOpaqueMarked(attrs)) {
          yield { header: { name: `${name}/${OPAQUE_WHITEOUT}`, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: st.mtimeMs / 1000 } };
        }
        yield* walk(host, name);
        continue;
      }
      const out = statEntry(header, st, host, firstLink);
      if (out) yield out;
      else logger.log('debug', `not archiving socket ${name}`);
    }
  }

  yield* walk(upperDir, '');
}
