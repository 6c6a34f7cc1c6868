import { lstatSync, type Stats } from 'node:fs';
import type { LayerEntry, TarHeader } from '../../archive/index.js';
import { wrapError } from '../../util/errors.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { WHITEOUT_PREFIX } from '../diff/diff-upper.js';
import { statEntry } from '../diff/stat-entry.js';
import { readXattrs, type XattrMap } from '../diff/getfattr.js';
import { isGantryError } from '../../util/errors.js';
import { comparePaths, type Change } from './diff.js';

export interface SnapshotLayerOptions {
  logger?: Logger;
  signal?: AbortSignal;
  /**
   * Extended attributes of archived files whose names match this regular expression (getfattr
   * `-m`), read with one `getfattr` per 500 files. Default: only `security.capability`, as Kaniko
   * keeps (file capabilities set by `setcap` in a RUN). `false`: none. Without getfattr on the
   * PATH they are skipped, with a warning.
   */
  xattrs?: string | false;
}

const XATTR_BATCH = 500;

async function readSelectedXattrs(paths: string[], match: string, logger: Logger, signal?: AbortSignal): Promise<XattrMap> {
  const out: XattrMap = new Map();
  for (let i = 0; i < paths.length; i += XATTR_BATCH) {
    try {
      for (const [k, v] of await readXattrs(paths.slice(i, i + XATTR_BATCH), { match, signal })) out.set(k, v);
    } catch (err) {
      if (isGantryError(err) && err.code === 'UNSUPPORTED') {
        logger.log('warn', `extended attributes (file capabilities) are not recorded in this layer: ${err.message}`);
        return out;
      }
      throw wrapError(err, 'reading extended attributes of changed files');
    }
  }
  return out;
}

interface Item {
  /** Archive name, no leading slash; a whiteout's last component is `.wh.<name>`. */
  name: string;
  /** In-root path of what is archived (the deleted path for a whiteout). */
  path: string;
  whiteout: boolean;
  /** Only there as the parent of a change. */
  ancestor?: boolean;
}

/**
 * The layer entries for `changes` (from diffSnapshots) under `root`: added and changed paths with
 * their current content and metadata, every ancestor directory of them (as an overlay upperdir
 * would hold them, so the layer carries their owner and mode), and a `.wh.<name>` whiteout per
 * deleted path. Sorted like diffUpperDir's output: by archive name, component by component, so a
 * directory precedes its contents. Names of one inode after the first become hard links to it.
 *
 * Metadata is read again as each entry is produced: the tar header and the body must agree even if
 * a RUN left something running that still writes (its output then lands as of that moment).
 */
export async function* snapshotLayerEntries(root: string, changes: readonly Change[], opts: SnapshotLayerOptions = {}): AsyncGenerator<LayerEntry> {
  const logger = opts.logger ?? silentLogger;
  const hostRoot = root === '/' ? '' : root.replace(/\/+$/, '');
  const items = new Map<string, Item>();
  const addAncestors = (path: string) => {
    for (let i = path.indexOf('/', 1); i > 0; i = path.indexOf('/', i + 1)) {
      const dir = path.slice(0, i);
      if (!items.has(dir)) items.set(dir, { name: dir.slice(1), path: dir, whiteout: false, ancestor: true });
    }
  };
  for (const c of changes) {
    addAncestors(c.path);
    if (c.kind === 'deleted') {
      const slash = c.path.lastIndexOf('/');
      const name = `${c.path.slice(1, slash + 1)}${WHITEOUT_PREFIX}${c.path.slice(slash + 1)}`;
      items.set(`wh:${c.path}`, { name, path: c.path, whiteout: true });
    } else {
      items.set(c.path, { name: c.path.slice(1), path: c.path, whiteout: false });
    }
  }
  const sorted = [...items.values()].sort((a, b) => comparePaths(a.name, b.name));
  const firstLink = new Map<string, string>();
  const match = opts.xattrs === undefined ? '^security\\.capability$' : opts.xattrs;
  const xattrs = match === false ? new Map() : await readSelectedXattrs(sorted.filter((i) => !i.whiteout && !i.ancestor).map((i) => hostRoot + i.path), match, logger, opts.signal);

  for (const item of sorted) {
    if (opts.signal?.aborted) throw wrapError(opts.signal.reason ?? new Error('aborted'), 'writing the snapshot layer', 'ABORTED');
    if (item.whiteout) {
      yield { header: { name: item.name, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0 } };
      continue;
    }
    const host = hostRoot + item.path;
    let st: Stats;
    try {
      st = lstatSync(host);
    } catch (err) {
      throw wrapError(err, `archiving ${item.path}`);
    }
    const header: TarHeader = { name: item.name, type: 'file', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtimeMs / 1000 };
    const attrs = xattrs.get(host);
    if (attrs && Object.keys(attrs).length > 0) header.xattrs = attrs;
    if (st.isDirectory()) {
      header.type = 'dir';
      yield { header };
      continue;
    }
    const out = statEntry(header, st, host, firstLink);
    if (out) yield out;
    else logger.log('debug', `not archiving socket ${item.path}`);
  }
}
