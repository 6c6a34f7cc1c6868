import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { GantryError, isGantryError } from '../util/errors.js';
import { copyImage, type CopyProgressEvent } from './copy.js';
import { DockerArchiveReader } from './dockerarchive.js';
import { DockerArchiveWriter } from './dockerarchive-writer.js';
import { OciLayoutReader, OciLayoutWriter } from './layout.js';
import { MemoryStore } from './memory.js';
import { randomImage, randomIndex } from './random.js';
import { toRawManifest } from './canonical.js';
import type { Descriptor } from './types.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64' };
const armv7 = { os: 'linux', architecture: 'arm', variant: 'v7' };

async function toLayout(src: MemoryStore | OciLayoutReader | DockerArchiveReader, ref: string | undefined, dir: string, tag: string, platform?: typeof amd64 | 'all') {
  const w = await OciLayoutWriter.create(dir);
  const res = await copyImage(src, ref, w, { tags: [tag], ...(platform ? { platform } : {}) });
  await w.commit();
  return res;
}

describe('copyImage', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('oci-copy');
  });
  after(() => tmp.cleanup());

  test('layout -> layout keeps manifest, config and layer digests', async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 3 }, 'x');
    await toLayout(mem, 'x', join(tmp.path, 'l1'), 'a');
    const res = await toLayout(await OciLayoutReader.open(join(tmp.path, 'l1'), 'a'), undefined, join(tmp.path, 'l2'), 'b');
    assert.deepEqual(res, { digest: img.raw.digest, mediaType: img.raw.mediaType, size: img.raw.bytes.length });
    const back = await OciLayoutReader.open(join(tmp.path, 'l2'), 'b');
    assert.deepEqual((await back.getManifest()).bytes, img.raw.bytes);
  });

  test('layout -> docker-archive -> layout keeps every digest', async () => {
    for (const family of ['oci', 'docker'] as const) {
      const mem = new MemoryStore();
      const img = await randomImage(mem, { layers: 2, family }, 'x');
      await toLayout(mem, 'x', join(tmp.path, `da-src-${family}`), 'a');
      const file = join(tmp.path, `img-${family}.tar`);
      const w = await DockerArchiveWriter.create(file);
      await copyImage(await OciLayoutReader.open(join(tmp.path, `da-src-${family}`)), 'a', w, { tags: ['example/app:1'] });
      await w.commit();
      const res = await toLayout(await DockerArchiveReader.open(file, 'example/app:1'), undefined, join(tmp.path, `da-dst-${family}`), 'b');
      assert.equal(res.digest, img.raw.digest, family);
      const back = await OciLayoutReader.open(join(tmp.path, `da-dst-${family}`), 'b');
      assert.deepEqual((await back.getManifest()).bytes, img.raw.bytes, family);
      // The staging directory is gone.
      assert.deepEqual((await readdir(tmp.path)).filter((n) => n.startsWith('.gantry-archive-')), []);
    }
  });

  test('an index is copied whole when the destination can hold one, children before the root', async () => {
    const mem = new MemoryStore();
    const idx = await randomIndex(mem, [amd64, arm64], {}, 'multi');
    const events: CopyProgressEvent[] = [];
    const w = await OciLayoutWriter.create(join(tmp.path, 'idx'));
    const res = await copyImage(mem, 'multi', w, { tags: ['m'], onProgress: (e) => events.push(e) });
    await w.commit();
    assert.equal(res.digest, idx.raw.digest);
    const written = events.filter((e) => e.type === 'manifest-written').map((e) => e.descriptor.digest);
    assert.deepEqual(written, [...idx.images.map((i) => i.raw.digest), idx.raw.digest]);
    const r = await OciLayoutReader.open(join(tmp.path, 'idx'));
    assert.equal(r.rootIndex.manifests.length, 1, 'children are not listed in index.json');
    for (const child of idx.index.manifests) assert.equal((await r.getManifestByDescriptor(child)).digest, child.digest);
  });

  test('a platform picks one image of an index; a docker archive gets one platform', async () => {
    const mem = new MemoryStore();
    const idx = await randomIndex(mem, [amd64, arm64, armv7], {}, 'multi');
    const res = await toLayout(mem, 'multi', join(tmp.path, 'one'), 'arm', { os: 'linux', architecture: 'aarch64' } as typeof amd64);
    assert.equal(res.digest, idx.images[1]!.raw.digest);

    const file = join(tmp.path, 'one.tar');
    const w = await DockerArchiveWriter.create(file);
    await assert.rejects(copyImage(mem, 'multi', w, { tags: ['a:b'], platform: 'all' }), (e) => isGantryError(e, 'UNSUPPORTED'));
    const res2 = await copyImage(mem, 'multi', w, { tags: ['a:b'], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    await w.commit();
    assert.equal(res2.digest, idx.images[2]!.raw.digest);
    await assert.rejects(
      copyImage(mem, 'multi', new MemoryStore(), { tags: [], platform: { os: 'linux', architecture: 's390x' } }),
      (e) => isGantryError(e, 'PLATFORM_NOT_FOUND') && e.message.includes('linux/amd64, linux/arm64, linux/arm/v7'),
    );
  });

  test('a failing blob source writes no manifest and leaves nothing running', async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 4 }, 'x');
    const broken = img.manifest.layers[2]!;
    let open = 0;
    let maxOpen = 0;
    const failing = Object.assign(Object.create(mem) as MemoryStore, {
      name: 'failing:',
      async openBlob(desc: Descriptor) {
        if (desc.digest === broken.digest) throw new GantryError('IO', 'disk on fire');
        open++;
        maxOpen = Math.max(maxOpen, open);
        const s = await mem.openBlob(desc);
        s.on('close', () => open--);
        return s;
      },
    });
    const dir = join(tmp.path, 'fail');
    const w = await OciLayoutWriter.create(dir);
    await assert.rejects(copyImage(failing, 'x', w, { tags: ['t'], concurrency: 2 }), (e) => {
      assert.ok(isGantryError(e, 'IO'), String(e));
      assert.match(e.message, new RegExp(`copying failing:.*layer 3/4 ${broken.digest}.*disk on fire`));
      return true;
    });
    await w.abort();
    assert.equal(open, 0, 'every source stream was closed when copyImage rejected');
    assert.ok(maxOpen <= 2, `at most 2 transfers at once, saw ${maxOpen}`);
    await assert.rejects(stat(join(dir, 'index.json')), { code: 'ENOENT' });
    const blobs = await readdir(join(dir, 'blobs', 'sha256'));
    assert.ok(!blobs.includes(img.raw.digest.slice(7)), 'manifest blob must not be written');
  });

  test('blobs the destination already has are skipped', async () => {
    const mem = new MemoryStore();
    await randomImage(mem, { layers: 2 }, 'x');
    const dir = join(tmp.path, 'skip');
    await toLayout(mem, 'x', dir, 'a');
    const events: CopyProgressEvent[] = [];
    const w = await OciLayoutWriter.create(dir);
    await copyImage(mem, 'x', w, { tags: ['b'], onProgress: (e) => events.push(e) });
    await w.commit();
    assert.equal(events.filter((e) => e.type === 'blob-skipped').length, 3);
    assert.equal(events.filter((e) => e.type === 'blob-started').length, 0);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: unknown[] };
    assert.equal(index.manifests.length, 2);
  });

  test("a destination's warmUp starts before the source manifest is read, and its failure is left to the writes", async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 1 }, 'x');
    const order: string[] = [];
    const src = Object.assign(Object.create(mem) as MemoryStore, {
      async getManifest(ref?: string) {
        order.push('source manifest');
        return mem.getManifest(ref);
      },
    });
    const dst = new MemoryStore();
    const warming = Object.assign(Object.create(dst) as MemoryStore, {
      warmUp(signal?: AbortSignal) {
        order.push(`warm up${signal ? ' (with the copy signal)' : ''}`);
        return Promise.reject(new GantryError('REGISTRY_UNREACHABLE', 'registry not reachable yet'));
      },
    });
    const signal = new AbortController().signal;
    const res = await copyImage(src, 'x', warming, { tags: ['t'], signal });
    assert.equal(res.digest, img.raw.digest);
    assert.deepEqual(order, ['warm up (with the copy signal)', 'source manifest']);
    assert.equal(dst.tags.get('t'), img.raw.digest, 'the copy went on after the failed warm-up');
  });

  test('a config whose diff_ids disagree with the layers is refused before anything is written', async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 2 }, 'x');
    const bad = { ...img.manifest, layers: img.manifest.layers.slice(0, 1) };
    const raw = toRawManifest(bad);
    await mem.putManifest(raw, ['bad']);
    const dst = new MemoryStore();
    await assert.rejects(copyImage(mem, 'bad', dst, { tags: ['t'] }), (e) => isGantryError(e, 'CONFIG_INVALID') && /1 layer\(s\) but config has 2/.test(e.message));
    assert.equal(dst.manifests.size, 0);
  });
});
