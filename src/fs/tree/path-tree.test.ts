import assert from 'node:assert/strict';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { resolveComponentsInRoot, unpackLayer, type LayerEntry, type LayerEntryType } from '../unpack/index.js';
import { LayerIndexStore } from './layer-index-store.js';
import { SparseRoot } from './materialize.js';
import { PathTree, type IndexEntry } from './path-tree.js';
import { recordIndex } from './record.js';

const root = process.getuid?.() === 0;
type Spec = [name: string, type: LayerEntryType, extra?: { mode?: number; uid?: number; gid?: number; link?: string; body?: string; mtime?: number }];

function entries(specs: Spec[]): LayerEntry[] {
  return specs.map(([name, type, x = {}]) => {
    const body = Buffer.from(x.body ?? '');
    return {
      header: {
        name,
        type,
        mode: x.mode ?? (type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
        uid: x.uid ?? 0,
        gid: x.gid ?? 0,
        size: type === 'file' ? body.length : 0,
        mtime: x.mtime ?? 1_500_000_000,
        ...(x.link !== undefined ? { linkname: x.link } : {}),
      },
      body: Readable.from(type === 'file' && body.length ? [body] : []),
    };
  });
}

async function* iter(list: LayerEntry[]): AsyncGenerator<LayerEntry> {
  yield* list;
}

// Layers exercising what the unpacker does beyond "write each entry": symlinked parents
// (relative, absolute, chained), whiteouts, opaque directories, replacement of every type by
// every other, hard links, implicit parents, owners and the content the index keeps.
const LAYERS: Spec[][] = [
  [
    ['etc/', 'dir'],
    ['etc/passwd', 'file', { body: 'root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n' }],
    ['etc/group', 'file', { body: 'root:x:0:\napp:x:1234:\n' }],
    ['usr/', 'dir', { mtime: 1_400_000_000 }],
    ['usr/lib/', 'dir', { mode: 0o750, uid: 7, gid: 8 }],
    ['usr/lib/libc.so', 'file', { body: 'elf', mode: 0o755 }],
    ['lib', 'symlink', { link: 'usr/lib' }],
    ['abs', 'symlink', { link: '/usr' }],
    ['chain', 'symlink', { link: 'abs/lib' }],
    ['dots', 'symlink', { link: '../../../usr' }],
    ['top', 'file', { body: 'top' }],
    ['hard', 'hardlink', { link: 'top' }],
    ['d/', 'dir'],
    ['d/x', 'file'],
    ['d/sub/', 'dir'],
    ['d/sub/y', 'file'],
    ['gone/', 'dir'],
    ['gone/inner', 'file'],
    ['tobefile/', 'dir', { mode: 0o700 }],
    ['tobefile/child', 'file'],
    ['tobedir', 'file'],
    ['srv/', 'dir', { mode: 0o1777 }],
  ],
  [
    ['.wh.top', 'file'],
    ['d/.wh..wh..opq', 'file'],
    ['d/z', 'file'],
    ['lib/added', 'file', { body: 'through a symlinked parent' }],
    ['chain/deeper/', 'dir', { mode: 0o711 }],
    ['.wh.gone', 'file'],
    ['tobefile', 'file', { mode: 0o600 }],
    ['tobedir/', 'dir', { mode: 0o755 }],
    ['implicit/a/b/file', 'file'],
    ['usr/', 'dir', { mode: 0o700, mtime: 1_450_000_000 }],
    ['etc/passwd', 'file', { body: 'root:x:0:0::/root:/bin/sh\n' }],
  ],
  [
    ['lib/', 'dir', { mode: 0o755 }],
    ['lib/own', 'file'],
    ['abs', 'symlink', { link: 'etc' }],
    ['.wh..wh..plnk', 'file'],
  ],
];

interface Meta {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  link?: string;
  content?: string;
}

function diskTree(dir: string, rel = '', out = new Map<string, Meta>()): Map<string, Meta> {
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, p));
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
    const m: Meta = { type, mode: type === 'symlink' ? 0o777 : st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (type === 'symlink') m.link = readlinkSync(join(dir, p));
    if (p === 'etc/passwd' || p === 'etc/group') m.content = readFileSync(join(dir, p), 'utf8');
    out.set(p, m);
    if (type === 'dir') diskTree(dir, p, out);
  }
  return out;
}

function treeMap(tree: PathTree): Map<string, Meta> {
  const out = new Map<string, Meta>();
  const walk = (node: NonNullable<ReturnType<PathTree['get']>>, rel: string) => {
    for (const name of [...node.children!.keys()].sort()) {
      const child = node.children!.get(name)!;
      const p = rel ? `${rel}/${name}` : name;
      const m: Meta = { type: child.type === 'dir' || child.type === 'symlink' ? child.type : 'file', mode: child.type === 'symlink' ? 0o777 : child.mode, uid: child.uid, gid: child.gid };
      if (child.type === 'symlink') m.link = child.linkname!;
      if (child.content) m.content = child.content.toString('utf8');
      out.set(p, m);
      if (child.children) walk(child, p);
    }
  };
  walk(tree.root, '');
  return out;
}

describe('PathTree', () => {
  let work: string;
  let full: string;
  const tree = new PathTree();
  const recorded: IndexEntry[][] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'path-tree-'));
    full = join(work, 'full');
    await mkdir(full);
    // The index is recorded from the very stream the unpacker consumes.
    for (const specs of LAYERS) {
      const out: IndexEntry[] = [];
      await unpackLayer(full, recordIndex(iter(entries(specs)), out), { ownership: root ? 'preserve' : 'squash' });
      recorded.push(out);
      tree.apply({ entries: out });
    }
  });
  after(() => rm(work, { recursive: true, force: true }));

  it('holds what unpacking the same layers puts on disk (types, modes, owners, links, kept content)', () => {
    const disk = diskTree(full);
    const mine = treeMap(tree);
    // Without root the disk cannot hold the layers' owners: compare them only as root.
    const norm = (m: Map<string, Meta>) => new Map([...m].map(([k, v]) => [k, root ? v : { ...v, uid: 0, gid: 0 }]));
    // Implicit parents are created by the process (owner = us, which is root in CI).
    assert.deepEqual(norm(mine), norm(disk));
  });

  it('keeps the content of /etc/passwd and /etc/group only', () => {
    const kept = recorded.flat().filter((e) => e.content !== undefined).map((e) => e.name);
    assert.deepEqual(kept, ['etc/passwd', 'etc/group', 'etc/passwd']);
  });

  const PATHS: Array<[string, boolean]> = [
    ['/lib/added', true],
    ['/chain/deeper/new/file', true],
    ['/dots/lib', true],
    ['/abs', false],
    ['/abs/passwd', true],
    ['/missing/x', true],
    ['/d/sub/y', true],
    ['/d/z', true],
    ['/tobedir/x', false],
    ['/lib', false],
    ['/usr/lib/../lib/libc.so', true],
  ];

  for (const [p, follow] of PATHS) {
    it(`a sparse root resolves ${p}${follow ? '' : ' (last not followed)'} as the full root does, with the same metadata on the way`, async () => {
      const dir = await mkdtemp(join(work, 'sparse-'));
      const sparse = new SparseRoot(dir, tree);
      sparse.materialize(p, follow);
      sparse.finish();
      const want = resolveComponentsInRoot(full, p, { followFinal: follow });
      assert.deepEqual(resolveComponentsInRoot(dir, p, { followFinal: follow }), want);
      const disk = diskTree(full);
      for (const [rel, m] of diskTree(dir)) {
        const expected = disk.get(rel);
        assert.ok(expected, `${rel} is not in the image`);
        assert.equal(m.type, expected.type, rel);
        if (m.type !== 'file' || rel.startsWith('etc/')) assert.deepEqual(root ? m : { ...m, uid: 0, gid: 0 }, root ? expected : { ...expected, uid: 0, gid: 0 }, rel);
        // The unpacker leaves a directory that a later layer wrote into with the time of the
        // unpack (nothing to match); where the disk kept a layer's time, the sparse root has it too.
        const fullMtime = lstatSync(join(full, rel)).mtimeMs;
        if (m.type === 'dir' && fullMtime < 1.6e12) assert.equal(lstatSync(join(dir, rel)).mtimeMs, fullMtime, `${rel} mtime`);
      }
    });
  }

  it('an unknown parent type throws where the unpacker refuses the layer', () => {
    const t = new PathTree();
    t.apply({ entries: [{ name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0 }] });
    assert.throws(() => t.apply({ entries: [{ name: 'f/child', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0 }] }), /not a directory/);
  });
});

describe('LayerIndexStore', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'layer-index-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('saves an index and a second store reads it back identically', async () => {
    const a = new LayerIndexStore(dir);
    const idx = { entries: [{ name: 'etc/passwd', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtime: 1.5, content: Buffer.from('root:x:0:0\n') }, { name: 'l', type: 'symlink' as const, mode: 0o777, uid: 1, gid: 2, mtime: 3, linkname: '/x' }] };
    a.put('sha256:' + 'a'.repeat(64), idx);
    await a.flush();
    const b = new LayerIndexStore(dir);
    assert.deepEqual(b.get('sha256:' + 'a'.repeat(64)), idx);
    assert.equal(b.get('sha256:' + 'b'.repeat(64)), undefined);
  });

  it('treats a corrupt or foreign file as missing', async () => {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'c'.repeat(64) + '.json'), '{"v":1,"diffId":"sha256:' + 'd'.repeat(64) + '","rows":[]}');
    await writeFile(join(dir, 'e'.repeat(64) + '.json'), 'not json');
    const s = new LayerIndexStore(dir);
    assert.equal(s.get('sha256:' + 'c'.repeat(64)), undefined);
    assert.equal(s.get('sha256:' + 'e'.repeat(64)), undefined);
  });
});
