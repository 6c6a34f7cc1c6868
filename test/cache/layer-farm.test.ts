/**
 * Stage roots from the store of unpacked layers (src/build/layer-farm.ts): a root made by
 * hard-linking stored layers must be the root the unpacker makes from the tars (whiteouts, opaque
 * directories, parents through lower symlinks, type changes, hard links, owners, modes, times),
 * a second root unpacks nothing, and nothing a build does to its root reaches the store.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeLayer, type LayerEntry } from '../../src/archive/index.js';
import { build, type BuildOptions } from '../../src/build/index.js';
import { DEFAULT_LAYER_STORE_BYTES, openUnpackedLayerStore, parseNotes } from '../../src/build/layer-farm.js';
import type { ImageLayer } from '../../src/build/layers.js';
import { RootFs, canHardLink } from '../../src/build/stage.js';
import { UnpackedLayerStore } from '../../src/cache/layer-store.js';
import { LayerIndexStore, unpackLayerStream } from '../../src/fs/index.js';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { isGantryError, silentLogger } from '../../src/util/index.js';

const asRoot = process.getuid?.() === 0;
const T = 1_000_000; // layer mtimes: far from "now", so directories made without an entry stand out

type Spec = { name: string; type: LayerEntry['header']['type']; mode?: number; uid?: number; gid?: number; mtime?: number; body?: string; linkname?: string; devmajor?: number; devminor?: number };

let tmp: TempDir;
let seq = 0;

/** A gzip layer file from specs, as an ImageLayer counting its opens. */
async function layer(specs: Spec[]): Promise<ImageLayer & { opens: () => number }> {
  const file = join(tmp.path, `layer-${seq++}.tar.gz`);
  const entries: LayerEntry[] = specs.map((s) => {
    const body = s.body !== undefined ? Buffer.from(s.body) : undefined;
    const header: LayerEntry['header'] = { name: s.name, type: s.type, mode: s.mode ?? (s.type === 'dir' ? 0o755 : 0o644), uid: s.uid ?? 0, gid: s.gid ?? 0, mtime: s.mtime ?? T, size: body?.length ?? 0 };
    if (s.linkname !== undefined) header.linkname = s.linkname;
    if (s.devmajor !== undefined) Object.assign(header, { devmajor: s.devmajor, devminor: s.devminor ?? 0 });
    return body ? { header, body } : { header };
  });
  const r = await writeLayer(entries, file, { compression: 'gzip', parallel: false });
  let opens = 0;
  return {
    descriptor: { mediaType: r.mediaType, digest: r.digest, size: r.size },
    diffId: r.diffId,
    open: async (): Promise<Readable> => {
      opens++;
      return createReadStream(file);
    },
    opens: () => opens,
  };
}

/** Everything about a tree that an image can see, hard links as groups, keyed by path. */
async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const inodes = new Map<number, string>();
  const recent = Date.now() / 1000 - 86_400;
  const visit = async (rel: string) => {
    const host = rel === '' ? root : join(root, rel);
    const st = await lstat(host);
    const mtime = st.mtimeMs / 1000 > recent ? 'now' : String(Math.round(st.mtimeMs));
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${mtime}`;
    if (st.isSymbolicLink()) what += ` -> ${await readlink(host)}`;
    else if (st.isFile()) what += ` ${createHash('sha256').update(await readFile(host)).digest('hex').slice(0, 12)}`;
    else if (st.isCharacterDevice() || st.isBlockDevice()) what += ` dev ${st.rdev}`;
    if (!st.isDirectory() && st.nlink > 1) {
      const first = inodes.get(st.ino);
      if (first) what += ` linked to ${first}`;
      else inodes.set(st.ino, rel);
    }
    out[rel || '.'] = what;
    if (st.isDirectory()) for (const name of (await readdir(host)).sort()) await visit(rel === '' ? name : `${rel}/${name}`);
  };
  await visit('');
  return out;
}

/** Files of a tree (content, mode, owner, mtime): what must never change in the store. */
async function storeSnapshot(dir: string): Promise<Record<string, string>> {
  const tree = await describeTree(dir);
  delete tree['.']; // the store marks a layer used by its directory's mtime
  // Hard-link groups inside the store are its own business; link counts change as roots link in.
  for (const k of Object.keys(tree)) tree[k] = tree[k]!.replace(/ linked to .*/, '');
  return tree;
}

before(async () => {
  tmp = await tempDir('layer-farm');
});
after(() => tmp?.cleanup());

describe('a root linked from stored layers is the root the unpacker makes', { skip: asRoot ? false : 'owners are kept only as root' }, () => {
  const cases: Array<{ name: string; lower: Spec[][]; top: Spec[] }> = [
    {
      name: 'whiteouts, opaque directories and a file replaced by a directory',
      lower: [[
        { name: 'a/', type: 'dir' }, { name: 'a/x', type: 'file', body: 'x' }, { name: 'a/y', type: 'file', body: 'y' },
        { name: 'b/', type: 'dir', mode: 0o750, uid: 3 }, { name: 'b/z', type: 'file', body: 'z' }, { name: 'b/sub/', type: 'dir' }, { name: 'b/sub/deep', type: 'file', body: 'd' },
        { name: 'c', type: 'file', body: 'c' }, { name: 'gone/', type: 'dir' }, { name: 'gone/f', type: 'file', body: 'f' },
      ]],
      top: [
        { name: 'a/.wh.x', type: 'file' }, { name: 'b/', type: 'dir', mode: 0o700, uid: 4, mtime: T + 5 }, { name: 'b/.wh..wh..opq', type: 'file' }, { name: 'b/new', type: 'file', body: 'new' },
        { name: '.wh.gone', type: 'file' }, { name: 'c/', type: 'dir' }, { name: 'c/inner', type: 'file', body: 'inner' },
      ],
    },
    {
      name: 'parents without an entry follow lower symlinks and keep lower metadata',
      lower: [[
        { name: 'usr/', type: 'dir', mode: 0o711, uid: 2, mtime: T + 1 }, { name: 'usr/lib/', type: 'dir', mode: 0o750, mtime: T + 2 }, { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
        { name: 'etc/', type: 'dir' }, { name: 'etc/conf', type: 'file', body: 'old' },
      ]],
      top: [
        { name: 'lib/libfoo.so', type: 'file', body: 'elf', mode: 0o755 }, { name: 'newdir/sub/file', type: 'file', body: 'n' },
        { name: 'etc/', type: 'dir', mode: 0o700, uid: 9, gid: 9, mtime: T + 3 }, { name: 'etc/.wh.conf', type: 'file' },
      ],
    },
    {
      name: 'type changes, and a whiteout under a directory that replaces a lower symlink',
      lower: [[
        { name: 'd/', type: 'dir' }, { name: 'd/f', type: 'file', body: 'f' }, { name: 's', type: 'symlink', linkname: 'target' }, { name: 'f', type: 'file', body: 'f' },
        { name: 'real/', type: 'dir' }, { name: 'real/keep', type: 'file', body: 'keep' }, { name: 'e', type: 'symlink', linkname: 'real' },
      ]],
      top: [
        { name: 'd', type: 'file', body: 'now a file' }, { name: 's/', type: 'dir' }, { name: 's/in', type: 'file', body: 'in' }, { name: 'f', type: 'symlink', linkname: '/d' },
        { name: 'e/', type: 'dir' }, { name: 'e/.wh.keep', type: 'file' },
      ],
    },
    {
      name: 'hard links, special modes, owners, devices, FIFOs and the root entry',
      lower: [],
      top: [
        { name: './', type: 'dir', mode: 0o750, uid: 7, gid: 8, mtime: T + 9 },
        { name: 'bin/', type: 'dir' }, { name: 'bin/su', type: 'file', body: 'su', mode: 0o4755, uid: 0, gid: 0 }, { name: 'bin/su2', type: 'hardlink', linkname: 'bin/su' },
        { name: 'home/', type: 'dir' }, { name: 'home/u/', type: 'dir', mode: 0o2770, uid: 1000, gid: 1000 }, { name: 'home/u/f', type: 'file', body: 'u', uid: 1000, gid: 1000, mode: 0o600 },
        { name: 'tmp/', type: 'dir', mode: 0o1777 }, { name: 'dev/', type: 'dir' }, { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 }, { name: 'dev/pipe', type: 'fifo', mode: 0o640 },
        { name: 'link', type: 'symlink', linkname: 'bin/su', uid: 5, gid: 6, mtime: T + 7 },
      ],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const layers = [...(await Promise.all(c.lower.map(layer))), await layer(c.top)];
      const n = seq;
      const plain = new RootFs(join(tmp.path, `plain-${n}`), new LayerIndexStore(join(tmp.path, `index-plain-${n}`)));
      await plain.catchUp(layers);
      const index = new LayerIndexStore(join(tmp.path, `index-linked-${n}`));
      const store = new UnpackedLayerStore(join(tmp.path, `store-${n}`), { unpack: async () => assert.fail('the build passes its own unpacker') });
      const linked = new RootFs(join(tmp.path, `linked-${n}`), index, store);
      await linked.catchUp(layers);
      assert.deepEqual(await describeTree(join(tmp.path, `linked-${n}`)), await describeTree(join(tmp.path, `plain-${n}`)));
      assert.equal((await store.list()).length, layers.length, 'every layer is in the store');
      for (const l of layers) assert.ok(index.get(l.diffId), 'the layer index is recorded while unpacking into the store');

      // A later build (a new store object on the same directory) reads no blob at all.
      const opensBefore = layers.map((l) => l.opens());
      const again = new RootFs(join(tmp.path, `again-${n}`), index, new UnpackedLayerStore(store.dir, { unpack: async () => assert.fail('nothing is unpacked again') }));
      await again.catchUp(layers);
      assert.deepEqual(layers.map((l) => l.opens()), opensBefore);
      assert.deepEqual(await describeTree(join(tmp.path, `again-${n}`)), await describeTree(join(tmp.path, `plain-${n}`)));
    });
  }

  it('two entries landing on one root path through a lower symlink: tar order wins, nothing outside the root is touched', async () => {
    // Lower: d/ and l -> d. Top, in tar order: l/foo -> <outside> then d/foo/ (0777). Unpacked,
    // d/foo ends a directory; linked from the store in readdir order it could end the symlink,
    // and the directory's chmod would follow it out of the root.
    const outside = join(tmp.path, 'outside-victim');
    await mkdir(outside, { mode: 0o700 });
    await chmod(outside, 0o700);
    const lower = await layer([{ name: 'd/', type: 'dir' }, { name: 'l', type: 'symlink', linkname: 'd' }]);
    const top = await layer([{ name: 'l/foo', type: 'symlink', linkname: outside }, { name: 'd/foo/', type: 'dir', mode: 0o777 }]);
    const plain = new RootFs(join(tmp.path, 'collide-plain'));
    await plain.catchUp([lower, top]);
    const store = new UnpackedLayerStore(join(tmp.path, 'collide-store'), { unpack: async () => assert.fail('the build passes its own unpacker') });
    const linked = new RootFs(join(tmp.path, 'collide-linked'), new LayerIndexStore(join(tmp.path, 'collide-index')), store);
    await linked.catchUp([lower, top]);
    assert.deepEqual(await describeTree(join(tmp.path, 'collide-linked')), await describeTree(join(tmp.path, 'collide-plain')));
    assert.equal((await stat(outside)).mode & 0o7777, 0o700, 'the directory outside the root keeps its mode');
  });

  it('a stored layer whose index is lost is unpacked from its blob once more, recording the index', async () => {
    const l = await layer([{ name: 'etc/', type: 'dir' }, { name: 'etc/os-release', type: 'file', body: 'ID=test' }]);
    const store = new UnpackedLayerStore(join(tmp.path, 'store-reindex'), { unpack: async () => undefined });
    await new RootFs(join(tmp.path, 'reindex-1'), new LayerIndexStore(join(tmp.path, 'reindex-a')), store).catchUp([l]);
    const fresh = new LayerIndexStore(join(tmp.path, 'reindex-b'));
    await new RootFs(join(tmp.path, 'reindex-2'), fresh, store).catchUp([l]);
    assert.deepEqual(fresh.get(l.diffId)?.entries.map((e) => e.name), ['etc/', 'etc/os-release']);
    const stored = (await store.list())[0]!.path;
    assert.notEqual((await stat(join(tmp.path, 'reindex-2', 'etc/os-release'))).ino, (await stat(join(stored, 'etc/os-release'))).ino, 'unpacked, not linked');
  });

  it('a layer the directory cannot stand for (xattrs on a directory) is unpacked from its blob, correctly', async () => {
    const file = join(tmp.path, `xattr-${seq++}.tar.gz`);
    const r = await writeLayer([{ header: { name: 'd/', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T, xattrs: { 'user.note': 'x' } } }, { header: { name: 'd/f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T, size: 1 }, body: Buffer.from('f') }], file, { compression: 'gzip', parallel: false });
    const l: ImageLayer = { descriptor: { mediaType: r.mediaType, digest: r.digest, size: r.size }, diffId: r.diffId, open: async () => createReadStream(file) };
    const store = new UnpackedLayerStore(join(tmp.path, 'store-xattr'), { unpack: async () => undefined });
    const root = join(tmp.path, 'root-xattr');
    await new RootFs(root, undefined, store).catchUp([l]);
    const [stored] = await store.list();
    assert.match(parseNotes(await store.notes(stored!.path))?.unsupported ?? '', /extended attributes on the dir/);
    assert.notEqual((await stat(join(root, 'd/f'))).ino, (await stat(join(stored!.path, 'd/f'))).ino, 'not linked');
    assert.equal(await readFile(join(root, 'd/f'), 'utf8'), 'f');
  });
});

describe('layer indexes are recorded only for content that matches the diffID', () => {
  it('a layer claiming another layer\'s diffID leaves no index under it, from the blob or through the store', async () => {
    const real = await layer([{ name: 'etc/', type: 'dir' }, { name: 'etc/os-release', type: 'file', body: 'ID=debian' }]);
    const evil = await layer([{ name: 'etc/', type: 'dir' }, { name: 'etc/os-release', type: 'file', body: 'ID=evil' }, { name: 'etc/evil', type: 'file', body: 'x' }]);
    const hostile: ImageLayer = { ...evil, diffId: real.diffId };
    const ways: Array<[string, (index: LayerIndexStore) => RootFs]> = [['from the blob', (index) => new RootFs(join(tmp.path, `hostile-blob-${seq++}`), index)]];
    if (asRoot) ways.push(['through the store', (index) => new RootFs(join(tmp.path, `hostile-store-${seq++}`), index, new UnpackedLayerStore(join(tmp.path, `store-hostile-${seq++}`), { unpack: async () => undefined }))]);
    for (const [how, make] of ways) {
      const index = new LayerIndexStore(join(tmp.path, `index-hostile-${seq++}`));
      const root = make(index);
      await root.catchUp([hostile]);
      assert.equal(await readFile(join(root.dir, 'etc/os-release'), 'utf8'), 'ID=evil', `${how}: unpacked as before`);
      assert.equal(index.get(real.diffId), undefined, `${how}: no index under the claimed diffID`);
      const honest = make(index);
      await honest.catchUp([real]);
      assert.ok(index.get(real.diffId), `${how}: the real layer is recorded`);
    }
  });
});

describe('the store of unpacked layers when something is off', { skip: asRoot ? false : 'the store is used only as root (owners kept)' }, () => {
  it('a layer hard-linking a file of a lower layer is remembered as unsupported: later builds unpack its blob only', async () => {
    const lower = await layer([{ name: 'usr/', type: 'dir' }, { name: 'usr/bin/', type: 'dir' }, { name: 'usr/bin/a', type: 'file', body: 'tool', mode: 0o755 }]);
    const top = await layer([{ name: 'usr/bin/b', type: 'hardlink', linkname: 'usr/bin/a' }, { name: 'usr/bin/c', type: 'file', body: 'c' }]);
    const plain = join(tmp.path, `lowerlink-plain-${seq++}`);
    await new RootFs(plain).catchUp([lower, top]);
    const storeDir = join(tmp.path, `store-lowerlink-${seq++}`);
    const first = new UnpackedLayerStore(storeDir, { unpack: async () => assert.fail('the build passes its own unpacker') });
    const linked = join(tmp.path, `lowerlink-linked-${seq++}`);
    await new RootFs(linked, undefined, first).catchUp([lower, top]);
    assert.deepEqual(await describeTree(linked), await describeTree(plain));
    const marker = (await first.list()).find((l) => l.diffId === top.diffId);
    assert.ok(marker, 'the layer has an entry in the store');
    assert.match(parseNotes(await first.notes(marker.path))?.unsupported ?? '', /hard link .* lower layer/);
    assert.deepEqual(await readdir(marker.path), [], 'the marker holds no files');

    const opens = [lower.opens(), top.opens()];
    const again = join(tmp.path, `lowerlink-again-${seq++}`);
    await new RootFs(again, undefined, new UnpackedLayerStore(storeDir, { unpack: async () => assert.fail('nothing is unpacked into the store again') })).catchUp([lower, top]);
    assert.deepEqual([lower.opens() - opens[0]!, top.opens() - opens[1]!], [0, 1], 'the lower layer is linked, the other read once from its blob');
    assert.deepEqual(await describeTree(again), await describeTree(plain));
  });

  it('a stored layer with unreadable notes is unpacked into the store again, once, and linked', async () => {
    const l = await layer([{ name: 'etc/', type: 'dir' }, { name: 'etc/f', type: 'file', body: 'f' }]);
    const index = new LayerIndexStore(join(tmp.path, `index-notes-${seq++}`));
    const storeDir = join(tmp.path, `store-notes-${seq++}`);
    const store = new UnpackedLayerStore(storeDir, { unpack: async () => undefined });
    await new RootFs(join(tmp.path, `notes-1-${seq++}`), index, store).catchUp([l]);
    const path = (await store.list())[0]!.path;
    await writeFile(join(dirname(path), 'notes.json'), '{"v":0}');
    const opens = l.opens();
    const root = join(tmp.path, `notes-2-${seq++}`);
    await new RootFs(root, index, new UnpackedLayerStore(storeDir, { unpack: async () => undefined })).catchUp([l]);
    assert.equal(l.opens() - opens, 1, 'read once, into the store');
    assert.equal((await stat(join(root, 'etc/f'))).ino, (await stat(join(path, 'etc/f'))).ino, 'linked from the store');
    assert.ok(parseNotes(await store.notes(path)), 'the notes are readable again');
  });

  it('a root on another mount of the same filesystem (same st_dev) is not linked from the store', async (t) => {
    const base = join(tmp.path, `bind-${seq++}`);
    await mkdir(join(base, 'src'), { recursive: true });
    await mkdir(join(base, 'mnt'));
    if (spawnSync('mount', ['--bind', join(base, 'src'), join(base, 'mnt')]).status !== 0) {
      t.skip('bind mounts are not available here');
      return;
    }
    try {
      const storeDir = join(base, 'store');
      await mkdir(storeDir);
      const root = join(base, 'mnt', 'root');
      await mkdir(root);
      assert.equal((await stat(root)).dev, (await stat(storeDir)).dev, 'st_dev alone cannot tell');
      assert.equal(await canHardLink(storeDir, root), false);
      assert.equal(await canHardLink(storeDir, join(base, 'src')), true, 'the same directory, not through the mount');
      const l = await layer([{ name: 'f', type: 'file', body: 'f' }]);
      await new RootFs(root, undefined, new UnpackedLayerStore(storeDir, { unpack: async () => undefined })).catchUp([l]);
      assert.equal(await readFile(join(root, 'f'), 'utf8'), 'f');
      assert.deepEqual(await readdir(storeDir), [], 'nothing was unpacked into the store, no probe is left');
      assert.deepEqual(await readdir(root), ['f'], 'no probe is left in the root');
    } finally {
      spawnSync('umount', [join(base, 'mnt')]);
    }
  });
});

describe('builds and the store of unpacked layers', { skip: asRoot ? false : 'the store is used only as root (owners kept)' }, () => {
  let base: BaseImage;
  let ctx: string;
  let xdg: string;
  /** The base layer as unpacking its blob gives it: what the store must hold, always. */
  let reference: Record<string, string>;
  const storeDir = () => join(xdg, 'gantry', 'layers');

  // Every regular file of the base is linked from the store; each is then changed by a RUN (in
  // the overlay, then by unpacking the RUN's layer onto the root), by ADD's unpacker, or by COPY.
  const DOCKERFILES = (ref: string) => ({
    'Dockerfile.run': `FROM ${ref}
RUN echo changed > /etc/passwd && chmod 600 /etc/group && touch /bin/busybox && rm /etc/hostname
RUN test "$(cat /etc/passwd)" = changed && test ! -e /etc/hostname
`,
    'Dockerfile.copy': `FROM ${ref}
ADD extra.tar /
COPY busybox /bin/busybox
COPY group /etc/group
RUN test "$(cat /etc/passwd)" = added && test "$(cat /etc/group)" = "root:x:0:"
`,
  });

  before(async () => {
    base = await busyboxBase();
    ctx = join(tmp.path, 'ctx');
    xdg = join(tmp.path, 'xdg');
    await mkdir(ctx);
    for (const [name, text] of Object.entries(DOCKERFILES(base.ref))) await writeFile(join(ctx, name), text);
    await copyFile('/bin/busybox', join(ctx, 'busybox'));
    await chmod(join(ctx, 'busybox'), 0o700);
    await writeFile(join(ctx, 'group'), 'root:x:0:\n');
    const added = Buffer.from('added');
    await writeLayer([{ header: { name: 'etc/passwd', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T, size: added.length }, body: added }], join(ctx, 'extra.tar'), { compression: 'none' });
    const index = JSON.parse(readFileSync(join(base.ociDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const blob = (d: string) => join(base.ociDir, 'blobs', ...d.split(':'));
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> };
    const ref = join(tmp.path, 'reference');
    await mkdir(ref);
    await unpackLayerStream(ref, createReadStream(blob(manifest.layers[0]!.digest)), { ownership: 'preserve' });
    reference = await storeSnapshot(ref);
  });

  const opts = (n: number, extra: Partial<BuildOptions> = {}): BuildOptions => ({
    context: ctx,
    dockerfile: join(ctx, 'Dockerfile.run'),
    reproducible: true,
    noPush: true,
    defaultOutputDir: false,
    ociLayoutPath: join(tmp.path, `out-${n}`),
    workDir: tmp.path,
    env: { ...process.env, XDG_CACHE_HOME: xdg },
    ...extra,
  });

  it('the second build unpacks nothing into the store, builds the same image, and no RUN, COPY or ADD changed the stored files', async () => {
    const copyDockerfile = { dockerfile: join(ctx, 'Dockerfile.copy') };
    const first = await build(opts(1));
    const firstCopy = await build(opts(11, copyDockerfile));
    const entries = async () => (await readdir(storeDir())).sort();
    const [name] = (await entries()).filter((e) => /^[0-9a-f]{64}$/.test(e));
    assert.ok(name, 'the base layer is in the store');
    const stored = join(storeDir(), name, 'tree');
    assert.deepEqual(await storeSnapshot(stored), reference, 'the stored layer is unchanged after the first builds');
    const before = { entries: await entries(), ino: (await stat(stored)).ino, sized: (await stat(join(storeDir(), name, 'size'))).mtimeMs };

    const second = await build(opts(2));
    assert.equal(second.digest, first.digest);
    assert.equal((await build(opts(12, copyDockerfile))).digest, firstCopy.digest);
    assert.deepEqual(await entries(), before.entries, 'no layer was added');
    assert.equal((await stat(stored)).ino, before.ino, 'the layer directory was not unpacked again');
    assert.equal((await stat(join(storeDir(), name, 'size'))).mtimeMs, before.sized);
    assert.deepEqual(await storeSnapshot(stored), reference, 'the stored layer is unchanged after the second builds');
  });

  it('the same build with the store turned off (GANTRY_LAYER_STORE_MAX=0) builds the same image', async () => {
    const off = join(tmp.path, 'xdg-off');
    const withStore = await build(opts(3));
    const without = await build(opts(4, { env: { ...process.env, XDG_CACHE_HOME: off, GANTRY_LAYER_STORE_MAX: '0' } }));
    assert.equal(without.digest, withStore.digest);
    assert.equal(await stat(join(off, 'gantry', 'layers')).then(() => true, () => false), false);
  });

  it('the inplace sandbox does not use the store', async () => {
    const xdgInplace = join(tmp.path, 'xdg-inplace');
    const root = join(tmp.path, 'inplace-root');
    await mkdir(root);
    const ctxInplace = join(tmp.path, 'ctx-inplace');
    await mkdir(ctxInplace);
    await copyFile(join(ctx, 'extra.tar'), join(ctxInplace, 'extra.tar'));
    await writeFile(join(ctxInplace, 'Dockerfile'), `FROM ${base.ref}\nADD extra.tar /\n`);
    await build(opts(5, { context: ctxInplace, dockerfile: join(ctxInplace, 'Dockerfile'), sandbox: 'inplace', inplace: { root }, env: { ...process.env, XDG_CACHE_HOME: xdgInplace } }));
    assert.equal(await readFile(join(root, 'etc', 'passwd'), 'utf8'), 'added', 'ADD unpacked onto the root');
    assert.match(await readFile(join(root, 'etc', 'group'), 'utf8'), /^root:x:0:\ndaemon/, 'the base was unpacked in place');
    const stored = await readdir(join(xdgInplace, 'gantry', 'layers')).catch(() => [] as string[]);
    assert.deepEqual(stored, []);
  });
});

describe('without root (owners squashed) the store is not used', { skip: asRoot ? false : 'switching to an unprivileged user needs root' }, () => {
  it('a root unpacked as nobody puts nothing in the store', async () => {
    const dir = join(tmp.path, 'squash');
    await chmod(tmp.path, 0o755); // nobody reads the layer file and writes below `dir`
    await mkdir(dir);
    await chmod(dir, 0o777);
    const l = await layer([{ name: 'etc/', type: 'dir' }, { name: 'etc/f', type: 'file', body: 'f' }]);
    const file = join(tmp.path, `layer-${seq - 1}.tar.gz`);
    const stage = fileURLToPath(new URL('../../src/build/stage.js', import.meta.url));
    const storeModule = fileURLToPath(new URL('../../src/cache/layer-store.js', import.meta.url));
    const script = `
      const { RootFs } = await import(${JSON.stringify(stage)});
      const { UnpackedLayerStore } = await import(${JSON.stringify(storeModule)});
      const { createReadStream } = await import('node:fs');
      const store = new UnpackedLayerStore(${JSON.stringify(join(dir, 'store'))}, { unpack: async () => { throw new Error('unpacked into the store'); } });
      const layer = { descriptor: ${JSON.stringify(l.descriptor)}, diffId: ${JSON.stringify(l.diffId)}, open: async () => createReadStream(${JSON.stringify(file)}) };
      await new RootFs(${JSON.stringify(join(dir, 'root'))}, undefined, store).catchUp([layer]);
      const { readdir } = await import('node:fs/promises');
      console.log(JSON.stringify(await readdir(${JSON.stringify(join(dir, 'store'))}).catch(() => [])));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), []);
    assert.equal(await readFile(join(dir, 'root', 'etc', 'f'), 'utf8'), 'f');
  });
});

describe('the size of the store (GANTRY_LAYER_STORE_MAX)', () => {
  const cases: Array<[string | undefined, number | undefined]> = [
    [undefined, DEFAULT_LAYER_STORE_BYTES],
    ['', DEFAULT_LAYER_STORE_BYTES],
    ['20GiB', 20 * 1024 ** 3],
    ['512MB', 512e6],
    ['1048576', 1048576],
    ['0', undefined],
  ];
  for (const [value, bytes] of cases) {
    it(`${JSON.stringify(value)} -> ${bytes === undefined ? 'no store' : bytes}`, () => {
      const env = { XDG_CACHE_HOME: '/x', ...(value !== undefined ? { GANTRY_LAYER_STORE_MAX: value } : {}) };
      const store = openUnpackedLayerStore(env, silentLogger);
      assert.equal(store?.maxBytes, bytes);
      if (store) assert.equal(store.dir, '/x/gantry/layers');
    });
  }
  it('an unreadable size fails the build before any work', () => {
    assert.throws(() => openUnpackedLayerStore({ GANTRY_LAYER_STORE_MAX: 'lots' }, silentLogger), (e) => isGantryError(e, 'INVALID_ARGUMENT') && /GANTRY_LAYER_STORE_MAX/.test(e.message));
  });
});
