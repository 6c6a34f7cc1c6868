import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { writeLayer } from '../archive/index.js';
import { unpackLayerStream } from '../fs/index.js';
import { isGantryError } from '../util/errors.js';
import { UnpackedLayerStore, type UnpackFn } from './layer-store.js';

let tmp: TempDir;
before(async () => {
  tmp = await tempDir('cache-layers');
});
after(async () => {
  await tmp?.cleanup();
});

let seq = 0;
async function makeLayer(files: Record<string, string>) {
  const file = join(tmp.path, `layer-${seq++}.tar.gz`);
  const entries = Object.entries(files).map(([name, text]) => {
    const body = Buffer.from(text);
    return { header: { name, type: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: body.length }, body };
  });
  const r = await writeLayer(entries, file, { compression: 'gzip', parallel: false });
  return { diffId: r.diffId, open: async (): Promise<Readable> => createReadStream(file), uncompressed: r.uncompressedSize };
}

/** The real unpacker from src/fs, counting calls. */
function countingUnpack(): { unpack: UnpackFn; calls: () => number } {
  let n = 0;
  return {
    unpack: async (dir, tar, signal) => {
      n++;
      await unpackLayerStream(dir, tar, { ownership: 'preserve', ...(signal ? { signal } : {}) });
    },
    calls: () => n,
  };
}

test('layer store: a layer is unpacked once and reused by later builds', async () => {
  const dir = join(tmp.path, 'reuse');
  const layer = await makeLayer({ 'etc/os-release': 'ID=test\n', 'bin/tool': '#!/bin/sh\n' });
  const counter = countingUnpack();
  const build1 = new UnpackedLayerStore(dir, { unpack: counter.unpack });
  const path = await build1.ensure(layer.diffId, layer.open);
  assert.equal(path, join(dir, layer.diffId.slice(7), 'tree'));
  assert.deepEqual(await readdir(dir), [layer.diffId.slice(7)], 'one entry holds everything about the layer');
  assert.equal(await readFile(join(path, 'etc/os-release'), 'utf8'), 'ID=test\n');

  const build2 = new UnpackedLayerStore(dir, { unpack: counter.unpack });
  assert.equal(await build2.ensure(layer.diffId, layer.open), path);
  assert.equal(await build2.lookup(layer.diffId), path);
  assert.equal(counter.calls(), 1);
  const [info] = await build2.list();
  assert.equal(info?.bytes, layer.uncompressed);
});

test('layer store: concurrent requests for one layer share one unpack', async () => {
  const layer = await makeLayer({ a: 'concurrent' });
  const counter = countingUnpack();
  const store = new UnpackedLayerStore(join(tmp.path, 'concurrent'), { unpack: counter.unpack });
  const paths = await Promise.all([1, 2, 3].map(() => store.ensure(layer.diffId, layer.open)));
  assert.equal(new Set(paths).size, 1);
  assert.equal(counter.calls(), 1);
});

test('layer store: content that does not match the diffID fails and leaves nothing behind', async () => {
  const dir = join(tmp.path, 'mismatch');
  const real = await makeLayer({ a: 'real' });
  const other = await makeLayer({ a: 'other' });
  const store = new UnpackedLayerStore(dir, { unpack: countingUnpack().unpack });
  await assert.rejects(store.ensure(real.diffId, other.open), (e) => isGantryError(e, 'DIGEST_MISMATCH'));
  assert.deepEqual(await readdir(dir), []);
  assert.equal(await store.lookup(real.diffId), undefined);
});

test('layer store: over the size limit the least recently used layer of another build is evicted', async () => {
  const dir = join(tmp.path, 'evict');
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => makeLayer({ [n]: n.repeat(20_000) })));
  const { unpack } = countingUnpack();
  const pa = await new UnpackedLayerStore(dir, { unpack }).ensure(a!.diffId, a!.open);
  const pb = await new UnpackedLayerStore(dir, { unpack }).ensure(b!.diffId, b!.open);
  // a used an hour ago, b a minute ago: a is the least recently used.
  await utimes(dirname(pa), new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
  await utimes(dirname(pb), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const limit = a!.uncompressed + b!.uncompressed + 1000;
  const build3 = new UnpackedLayerStore(dir, { unpack, maxBytes: limit });
  await build3.ensure(c!.diffId, c!.open);
  const left = (await build3.list()).map((l) => l.diffId).sort();
  assert.deepEqual(left, [b!.diffId, c!.diffId].sort());
  assert.ok((await readdir(dir)).every((n) => !n.startsWith('.')), 'no temp or trash directories remain');
});

test('layer store: prune removes old layers, leftovers of interrupted unpacks, or everything', async () => {
  const dir = join(tmp.path, 'prune');
  const [a, b] = await Promise.all([makeLayer({ a: 'a' }), makeLayer({ b: 'b' })]);
  const { unpack } = countingUnpack();
  const pa = await new UnpackedLayerStore(dir, { unpack }).ensure(a.diffId, a.open);
  await new UnpackedLayerStore(dir, { unpack }).ensure(b.diffId, b.open);
  await utimes(dirname(pa), new Date(Date.now() - 48 * 3_600_000), new Date(Date.now() - 48 * 3_600_000));
  await mkdir(join(dir, '.tmp-interrupted', 'etc'), { recursive: true });

  const gc = new UnpackedLayerStore(dir, { unpack });
  const old = await gc.prune({ olderThanMs: 24 * 3_600_000 });
  assert.deepEqual(old.removed, [a.diffId]);
  assert.ok(old.freedBytes > 0);
  assert.deepEqual((await readdir(dir)).sort(), ['.tmp-interrupted', b.diffId.slice(7)], 'a fresh temporary directory may be another build\'s unpack');
  await gc.prune({ now: new Date(Date.now() + 2 * 3_600_000) });
  assert.deepEqual(await readdir(dir), [b.diffId.slice(7)], 'an hour later it is a leftover');

  const all = await gc.prune({ all: true });
  assert.deepEqual(all.removed, [b.diffId]);
  assert.deepEqual(await readdir(dir), []);
});

test('layer store: what the unpacker returns is kept beside the layer, listed nowhere, and pruned with it', async () => {
  const dir = join(tmp.path, 'notes');
  const layer = await makeLayer({ a: 'notes' });
  const inner = countingUnpack();
  const unpack: UnpackFn = async (d, tar, signal) => {
    await inner.unpack(d, tar, signal);
    return { seen: 'unpacked' };
  };
  const store = new UnpackedLayerStore(dir, { unpack });
  const path = await store.ensure(layer.diffId, layer.open);
  assert.deepEqual(await store.notes(path), { seen: 'unpacked' });
  assert.deepEqual((await store.list()).map((l) => l.diffId), [layer.diffId]);
  await store.prune({ all: true });
  assert.deepEqual(await readdir(dir), []);
});

test('layer store: an unpacker given for one layer replaces the store\'s own', async () => {
  const layer = await makeLayer({ a: 'override' });
  const store = new UnpackedLayerStore(join(tmp.path, 'override'), { unpack: async () => assert.fail('the store\'s own unpacker is not used') });
  const counter = countingUnpack();
  const path = await store.ensure(layer.diffId, layer.open, undefined, counter.unpack);
  assert.equal(counter.calls(), 1);
  assert.equal(await readFile(join(path, 'a'), 'utf8'), 'override');
  assert.equal(await store.notes(path), undefined, 'nothing returned, nothing kept');
});

test('layer store: the store and its entries are private (0700), an existing store of ours is made so', async () => {
  const dir = join(tmp.path, 'private');
  await mkdir(dir, { mode: 0o755 });
  await chmod(dir, 0o755);
  // A layer whose root entry is 0755, as every base image's is.
  const file = join(tmp.path, `layer-${seq++}.tar.gz`);
  const r = await writeLayer([
    { header: { name: './', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 } },
    { header: { name: 'su', type: 'file', mode: 0o4755, uid: 0, gid: 0, mtime: 0, size: 2 }, body: Buffer.from('su') },
  ], file, { compression: 'gzip', parallel: false });
  const path = await new UnpackedLayerStore(dir, { unpack: countingUnpack().unpack }).ensure(r.diffId, async () => createReadStream(file));
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  assert.equal((await stat(dirname(path))).mode & 0o777, 0o700, 'the entry hides the layer root, whatever its mode');
});

test('layer store: another build\'s unpack in progress survives eviction', async () => {
  const dir = join(tmp.path, 'concurrent-prune');
  const [a, b] = await Promise.all([makeLayer({ a: 'a'.repeat(20_000) }), makeLayer({ b: 'b'.repeat(20_000) })]);
  const { unpack } = countingUnpack();
  await new UnpackedLayerStore(dir, { unpack }).ensure(a.diffId, a.open);
  await mkdir(join(dir, '.tmp-other-build', 'tree', 'etc'), { recursive: true });
  await mkdir(join(dir, '.trash-other-build', 'etc'), { recursive: true });
  await new UnpackedLayerStore(dir, { unpack, maxBytes: 1 }).ensure(b.diffId, b.open);
  assert.deepEqual((await readdir(dir)).sort(), ['.tmp-other-build', '.trash-other-build', b.diffId.slice(7)]);
});

test('layer store: a stored layer with a part missing is damaged: removed, unpacked again once, never counted as free', async () => {
  const cases: Array<[string, (entry: string) => Promise<void>]> = [
    ['notes missing', (e) => rm(join(e, 'notes.json'))],
    ['size missing', (e) => rm(join(e, 'size'))],
    ['size unreadable', (e) => writeFile(join(e, 'size'), 'lots')],
  ];
  for (const [what, damage] of cases) {
    const dir = join(tmp.path, `damaged-${what.replace(/ /g, '-')}`);
    const layer = await makeLayer({ a: what });
    const counter = countingUnpack();
    const path = await new UnpackedLayerStore(dir, { unpack: counter.unpack }).ensure(layer.diffId, layer.open);
    await damage(dirname(path));
    const later = new UnpackedLayerStore(dir, { unpack: counter.unpack });
    assert.deepEqual(await later.list(), [], `${what}: not listed`);
    assert.equal(await later.lookup(layer.diffId), undefined, `${what}: not served`);
    assert.equal(await later.ensure(layer.diffId, layer.open), path);
    assert.equal(await later.ensure(layer.diffId, layer.open), path);
    assert.equal(counter.calls(), 2, `${what}: unpacked again, once`);
    assert.equal((await later.list())[0]?.bytes, layer.uncompressed);
    await damage(dirname(path));
    const evicted = await new UnpackedLayerStore(dir, { unpack: counter.unpack }).prune({ maxBytes: 1 << 30 });
    assert.deepEqual(evicted.removed, [layer.diffId], `${what}: a damaged entry is removed by eviction`);
  }
});

test('layer store: side files of the former layout are not layers and are pruned', async () => {
  const dir = join(tmp.path, 'former');
  const layer = await makeLayer({ a: 'former' });
  const name = layer.diffId.slice(7);
  await mkdir(join(dir, name, 'etc'), { recursive: true });
  await writeFile(join(dir, `${name}.size`), '10');
  await writeFile(join(dir, `${name}.json`), '{}');
  const counter = countingUnpack();
  const store = new UnpackedLayerStore(dir, { unpack: counter.unpack });
  const path = await store.ensure(layer.diffId, layer.open);
  assert.equal(counter.calls(), 1);
  assert.equal(await readFile(join(path, 'a'), 'utf8'), 'former');
  await store.prune();
  assert.deepEqual(await readdir(dir), [name]);
});

test('a layer is met once before it is worth storing: seenBefore says no the first time, yes after', async () => {
  const dir = join(tmp.path, 'seen');
  const store = new UnpackedLayerStore(dir, { unpack: async () => assert.fail('nothing is unpacked'), storeOnSecondSight: true });
  const diffId = `sha256:${'5'.repeat(64)}`;
  assert.equal(store.storeOnSecondSight, true);
  assert.equal(await store.seenBefore(diffId), false);
  assert.equal(await store.seenBefore(diffId), true);
  assert.equal(await new UnpackedLayerStore(dir, { unpack: async () => assert.fail('nothing is unpacked') }).seenBefore(diffId), true, 'another build on the machine sees it too');
  assert.deepEqual(await store.list(), [], 'a marker is not a stored layer');
});
