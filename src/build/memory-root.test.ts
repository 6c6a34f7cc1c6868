import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PathTree, SparseRoot, type IndexEntry } from '../fs/index.js';
import { resolveComponentsInRoot } from '../fs/unpack/index.js';
import { copyItem, RootWriter, type CopyOptions } from './copy.js';
import { entriesFromRoot } from './layers.js';
import { MemoryRoot } from './memory-root.js';
import { diskOps } from './root-fs-ops.js';
import { lstatInTree, type SourceTree } from './sources.js';
import { resolveOwner } from './users.js';

const OLD = 1_000_000_000;
const e = (name: string, type: IndexEntry['type'], extra: Partial<IndexEntry> = {}): IndexEntry => ({ name, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: OLD, ...extra });

/** An image: symlinked directories, a symlink to a file, a file where a copy puts a directory and back. */
function image(): PathTree {
  const t = new PathTree();
  t.apply({
    entries: [
      e('etc', 'dir', { mode: 0o750, uid: 3 }),
      e('etc/passwd', 'file', { content: Buffer.from('app:x:1234:1235::/:/bin/sh\n') }),
      e('etc/group', 'file', { content: Buffer.from('grp:x:77:\n') }),
      e('opt', 'dir', { mtime: OLD + 1 }),
      e('opt/real', 'dir', { mode: 0o711, uid: 9, gid: 9, mtime: OLD + 2 }),
      e('opt/real/app', 'dir', { mode: 0o700 }),
      e('opt/real/app/run.sh', 'dir'),
      e('opt/real/app/run.sh/inner', 'file'),
      e('opt/real/app/sub', 'file'),
      e('opt/real/app/keep', 'file'),
      e('opt/link', 'symlink', { linkname: 'real' }),
      e('opt/abs', 'symlink', { linkname: '/opt/real' }),
      e('srv', 'dir'),
      e('srv/target', 'file'),
      e('srv/f', 'symlink', { linkname: '/srv/target' }),
      e('usr', 'dir', { mtime: OLD + 3 }),
    ],
  });
  return t;
}

async function bodyOf(b: Buffer | Readable | undefined): Promise<Buffer | undefined> {
  if (!b || Buffer.isBuffer(b)) return b;
  const chunks: Buffer[] = [];
  for await (const c of b) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('an in-memory sparse root writes the layer a sparse root on disk writes', () => {
  let dir: string;
  let ctx: SourceTree;
  let start: number;
  before(async () => {
    start = Date.now() - 1000;
    dir = await mkdtemp(join(tmpdir(), 'gantry-memroot-'));
    const c = join(dir, 'ctx');
    await mkdir(join(c, 'app', 'sub'), { recursive: true });
    await writeFile(join(c, 'app', 'run.sh'), 'run\n');
    await writeFile(join(c, 'app', 'sub', 'x'), 'x\n');
    await writeFile(join(c, 'app', 'hl1'), 'linked\n');
    await link(join(c, 'app', 'hl1'), join(c, 'app', 'hl2'));
    await symlink('run.sh', join(c, 'app', 'ln'));
    await writeFile(join(c, 'big'), Buffer.alloc((1 << 20) + 5, 7));
    await writeFile(join(c, 'file.txt'), 'new content\n');
    ctx = { dir: c, resetOwners: true, name: 'build context' };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const cases: Array<[string, string, string, Partial<CopyOptions>, boolean]> = [
    ['into a directory through a symlink, a file replacing a directory and a directory a file', 'app', '/opt/link/app', {}, false],
    ['onto a symlink to a file', 'file.txt', '/srv/f', {}, false],
    ['to missing parents with --chmod', 'app', '/new/deep/', { chmod: 0o750 }, true],
    ['into an existing directory', 'file.txt', '/usr', {}, false],
    ['through an absolute symlink with --chown', 'app', '/opt/abs/', { chown: { uid: 5, gid: 6 } }, true],
    ['a file larger than what is read whole', 'big', '/srv/big', {}, false],
  ];

  let n = 0;
  for (const [what, src, dest, opts, destIsDir] of cases) {
    it(`copies ${what}`, async () => {
      const layers = [];
      for (const memory of [false, true]) {
        const tree = image();
        const root = join(dir, `root-${n++}`);
        let w: RootWriter;
        let ownerOf: (rel: string) => { uid: number; gid: number } | undefined = () => undefined;
        if (memory) w = new RootWriter(root, new MemoryRoot(root, tree));
        else {
          await mkdir(root);
          const sparse = new SparseRoot(root, tree);
          sparse.materialize(dest, true);
          sparse.finish();
          ownerOf = (rel) => sparse.ownerOf(rel);
          w = new RootWriter(root, diskOps);
        }
        const full: CopyOptions = { now: new Date(1_700_000_000_000), ...opts };
        if (destIsDir) await w.mkdirAll(dest, full.chown ?? { uid: 0, gid: 0 }, full.now);
        const entry = await lstatInTree(ctx, src, true);
        assert.ok(entry);
        await copyItem(w, { kind: 'tree', tree: ctx, entry, name: src }, dest, full);
        await w.finish();
        const out = [];
        for await (const x of entriesFromRoot(root, w.written, (rel) => w.owners.get(rel) ?? ownerOf(rel), w.ops)) {
          const m = x.header.mtime!;
          const t = typeof m === 'number' ? m * 1000 : m.getTime();
          // A directory something was added to has the time of the copy: equal only in being recent.
          out.push({ ...x.header, mtime: t >= start ? 'now' : t, body: await bodyOf(x.body) });
        }
        layers.push(out);
      }
      assert.ok(layers[0]!.length > 0);
      assert.deepEqual(layers[1], layers[0]);
    });
  }
});

describe('the in-memory root behaves as the disk where the copy relies on it', () => {
  const R = '/nowhere/root';
  const fresh = () => new MemoryRoot(R, image());
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return (err as NodeJS.ErrnoException).code;
    }
    return 'none';
  };

  it('reports ENOENT, ENOTDIR, EEXIST and EISDIR', () => {
    const m = fresh();
    const cases: Array<[string, () => unknown, string]> = [
      ['lstat of a missing path', () => m.lstat(`${R}/nope`), 'ENOENT'],
      ['lstat below a file', () => m.lstat(`${R}/srv/target/x`), 'ENOTDIR'],
      ['mkdir of an existing name', () => m.mkdir(`${R}/usr`), 'EEXIST'],
      ['mkdir below a missing directory', () => m.mkdir(`${R}/a/b`), 'ENOENT'],
      ['symlink over an existing name', () => m.symlink('x', `${R}/srv/target`), 'EEXIST'],
      ['unlink of a directory', () => m.unlink(`${R}/usr`), 'EISDIR'],
      ['readlink of a file', () => m.readlink(`${R}/srv/target`), 'EINVAL'],
      ['rm -rf of a missing path', () => m.rmTree(`${R}/nope/deeper`), 'none'],
    ];
    for (const [what, fn, want] of cases) assert.equal(code(fn), want, what);
  });

  it('gives a directory the current time when an entry is added or removed, and keeps times set after', () => {
    const m = fresh();
    assert.equal(m.lstat(`${R}/usr`).mtime.getTime(), (OLD + 3) * 1000, 'the image time until then');
    const before = Date.now();
    m.mkdir(`${R}/usr/new`);
    assert.ok(m.lstat(`${R}/usr`).mtime.getTime() >= before);
    m.utimes(`${R}/usr`, new Date(5000), new Date(5000));
    m.lchown(`${R}/usr/new`, 7, 8);
    m.chmod(`${R}/usr/new`, 0o700);
    assert.equal(m.lstat(`${R}/usr`).mtime.getTime(), 5000, 'metadata changes of an entry leave its directory alone');
    m.rmTree(`${R}/usr/new`);
    assert.ok(m.lstat(`${R}/usr`).mtime.getTime() >= before);
  });

  it('keeps hard links as one inode and counts them', () => {
    const m = fresh();
    m.writeFile(`${R}/srv/a`, Buffer.from('a'));
    m.link(`${R}/srv/a`, `${R}/srv/b`);
    const [a, b] = [m.lstat(`${R}/srv/a`), m.lstat(`${R}/srv/b`)];
    assert.equal(a.ino, b.ino);
    assert.equal(b.nlink, 2);
    assert.notEqual(m.lstat(`${R}/srv/target`).ino, a.ino);
    m.unlink(`${R}/srv/a`);
    assert.equal(m.lstat(`${R}/srv/b`).nlink, 1);
  });

  it('resolves paths and names from the image the way the disk root does', async () => {
    const m = fresh();
    assert.deepEqual(resolveComponentsInRoot(R, '/opt/link/app/../../abs/x', { followFinal: true }, m), ['opt', 'real', 'x']);
    assert.deepEqual(resolveComponentsInRoot(R, '/srv/f', { followFinal: true }, m), ['srv', 'target']);
    assert.deepEqual(await resolveOwner('app:grp', R, m), { uid: 1234, gid: 77 });
    assert.equal(m.lstat(`${R}/opt/real`).mode & 0o7777, 0o711);
    assert.equal(m.lstat(`${R}/etc`).uid, 3);
  });
});
