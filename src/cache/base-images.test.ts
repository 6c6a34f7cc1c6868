import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blobPath } from '../oci/descriptor.js';
import { MemoryStore } from '../oci/memory.js';
import { randomImage, randomIndex, type RandomImage } from '../oci/random.js';
import type { ImageReader } from '../oci/store.js';
import type { Platform } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';
import { GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { BaseImageCache } from './base-images.js';

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };
const TTL = 3_600_000;

/** A store that also counts the reads a registry would answer. */
function counted(store: MemoryStore, defaultRef: string): ImageReader & { manifestReads: number; blobReads: number } {
  const r = {
    name: store.name,
    manifestReads: 0,
    blobReads: 0,
    getManifest: (ref?: string) => (r.manifestReads++, store.getManifest(ref ?? defaultRef)),
    getManifestByDescriptor: (d: Parameters<ImageReader['getManifestByDescriptor']>[0]) => (r.manifestReads++, store.getManifestByDescriptor(d)),
    openBlob: (d: Parameters<ImageReader['openBlob']>[0]) => (r.blobReads++, store.openBlob(d)),
  };
  return r;
}

/** A registry that cannot be reached (or answers `code`). */
function failing(code: GantryError['code']): ImageReader {
  const fail = async (): Promise<never> => {
    throw new GantryError(code, `registry says ${code}`);
  };
  return { name: 'down', getManifest: fail, getManifestByDescriptor: fail, openBlob: fail };
}

function recorder(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, log: (level, msg) => lines.push(`${level}: ${msg}`) };
}

async function readAll(reader: ImageReader, desc: Parameters<ImageReader['openBlob']>[0]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await reader.openBlob(desc)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('base image cache', () => {
  let dir: string;
  let store: MemoryStore;
  let img: RandomImage;
  let idx: Awaited<ReturnType<typeof randomIndex>>;
  const ref = parseReference('registry.example/app:v1');
  const multi = parseReference('registry.example/multi:v2');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gantry-base-cache-'));
    store = new MemoryStore();
    img = await randomImage(store, { layers: 2 }, 'v1');
    idx = await randomIndex(store, [AMD64, ARM64], { layers: 1 }, 'v2');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const cacheIn = (d: string, extra: Partial<ConstructorParameters<typeof BaseImageCache>[0]> = {}) => new BaseImageCache({ dir: d, ttlMs: TTL, ...extra });

  it('warms an image once: a second warm finds it cached, --force downloads it again', async () => {
    const cache = cacheIn(dir);
    const first = await cache.warm(ref, AMD64, counted(store, 'v1'));
    assert.equal(first.digest, img.raw.digest);
    assert.equal(first.downloaded, true);
    assert.equal(first.dir, join(dir, 'gantry', 'images', img.raw.digest.replace(':', '-')));
    assert.equal((await readFile(join(first.dir, 'oci-layout'), 'utf8')).includes('imageLayoutVersion'), true);

    const again = counted(store, 'v1');
    const second = await cache.warm(ref, AMD64, again);
    assert.equal(second.downloaded, false);
    assert.equal(again.blobReads, 0, 'a cached image is not downloaded again');

    const forced = counted(store, 'v1');
    assert.equal((await cache.warm(ref, AMD64, forced, { force: true })).downloaded, true);
    assert.equal(forced.blobReads, 3, 'config and both layers');
    assert.deepEqual(await readdir(join(dir, 'gantry', 'tmp')), [], 'no work directory is left behind');
  });

  it('finds a tag by asking the registry for the manifest only, and serves manifest, config and layers from disk', async () => {
    const cache = cacheIn(dir);
    const remote = counted(store, 'v1');
    const found = await cache.find(ref, AMD64, remote);
    assert.ok(found.hit);
    assert.equal(remote.manifestReads, 1);
    assert.equal(found.hit.digest, img.raw.digest);
    assert.deepEqual(await readAll(found.hit.reader, img.manifest.layers[1]!), store.blobs.get(img.manifest.layers[1]!.digest));
    assert.equal(remote.blobReads, 0);
  });

  it('a tag that now names another image is a miss that hands back the manifest the registry answered', async () => {
    const moved = await randomImage(store, { layers: 1 }, 'moved');
    const found = await cacheIn(dir).find(ref, AMD64, counted(store, 'moved'));
    assert.equal(found.hit, undefined);
    assert.equal(found.root?.digest, moved.raw.digest);
  });

  it('a digest reference is answered from disk without contacting the registry', async () => {
    const pinned = parseReference(`registry.example/app@${img.raw.digest}`);
    const found = await cacheIn(dir).find(pinned, AMD64, failing('INTERNAL'));
    assert.equal(found.hit?.digest, img.raw.digest);
    const unknown = parseReference(`registry.example/app@sha256:${'0'.repeat(64)}`);
    assert.deepEqual(await cacheIn(dir).find(unknown, AMD64, failing('INTERNAL')), {});
  });

  it('caches one platform of an index, found by tag and by the index digest for that platform only', async () => {
    const d = await mkdtemp(join(tmpdir(), 'gantry-base-cache-idx-'));
    try {
      const cache = cacheIn(d);
      const warmed = await cache.warm(multi, ARM64, counted(store, 'v2'));
      assert.equal(warmed.digest, idx.images[1]!.raw.digest);
      assert.equal((await cache.find(multi, ARM64, counted(store, 'v2'))).hit?.digest, warmed.digest);
      const byIndex = parseReference(`registry.example/multi@${idx.raw.digest}`);
      assert.equal((await cache.find(byIndex, ARM64, failing('INTERNAL'))).hit?.digest, warmed.digest);
      assert.deepEqual(await cache.find(byIndex, AMD64, failing('INTERNAL')), {}, 'amd64 was not warmed');
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it('an unreachable registry falls back to the digest the tag had when warmed, with a warning; other errors are not hidden', async () => {
    const log = recorder();
    const found = await cacheIn(dir, { logger: log }).find(ref, AMD64, failing('REGISTRY_UNREACHABLE'));
    assert.equal(found.hit?.digest, img.raw.digest);
    assert.match(log.lines.join('\n'), /^warn: .*cannot be reached.*which the tag named when it was warmed/m);
    await assert.rejects(cacheIn(dir).find(parseReference('registry.example/never:warmed'), AMD64, failing('REGISTRY_UNREACHABLE')), { code: 'REGISTRY_UNREACHABLE' });
    await assert.rejects(cacheIn(dir).find(ref, AMD64, failing('NOT_FOUND')), { code: 'NOT_FOUND' });
    await assert.rejects(cacheIn(dir).find(ref, AMD64, failing('UNAUTHORIZED')), { code: 'UNAUTHORIZED' });
  });

  it('entries older than the TTL are misses, and the warmer downloads them again', async () => {
    const later = () => Date.now() + TTL + 60_000;
    const log = recorder();
    const cache = cacheIn(dir, { now: later, logger: log });
    assert.equal(await cache.open(img.raw.digest), undefined);
    assert.match(log.lines.join('\n'), /older than the cache TTL/);
    assert.ok(await cacheIn(dir, { now: later, ttlMs: 0 }).open(img.raw.digest), 'a TTL of 0 never expires');
    const remote = counted(store, 'v1');
    assert.equal((await cache.warm(ref, AMD64, remote)).downloaded, true);
    assert.equal(remote.blobReads, 3);
  });

  it('a damaged entry (missing or truncated blob, broken manifest) is a miss with a warning', async () => {
    const damages: Array<[string, (entry: string) => Promise<void>]> = [
      ['truncated layer', (e) => truncate(join(e, blobPath(img.manifest.layers[0]!.digest)), 10)],
      ['missing config', (e) => rm(join(e, blobPath(img.manifest.config.digest)))],
      ['manifest rewritten', (e) => writeFile(join(e, blobPath(img.raw.digest)), '{"schemaVersion":2}')],
      ['index.json garbage', (e) => writeFile(join(e, 'index.json'), 'not json')],
    ];
    for (const [what, damage] of damages) {
      const d = await mkdtemp(join(tmpdir(), 'gantry-base-cache-bad-'));
      try {
        const warmed = await cacheIn(d).warm(ref, AMD64, counted(store, 'v1'));
        await damage(warmed.dir);
        const log = recorder();
        const found = await cacheIn(d, { logger: log }).find(ref, AMD64, counted(store, 'v1'));
        assert.equal(found.hit, undefined, what);
        assert.match(log.lines.join('\n'), /^warn: base image cache entry .* is unusable/m, what);
        // The warmer repairs it without --force.
        assert.equal((await cacheIn(d).warm(ref, AMD64, counted(store, 'v1'))).downloaded, true, what);
        assert.ok((await cacheIn(d).find(ref, AMD64, counted(store, 'v1'))).hit, what);
      } finally {
        await rm(d, { recursive: true, force: true });
      }
    }
  });

  it('a layer whose bytes changed but not its size fails while streaming, naming the entry to delete', async () => {
    const d = await mkdtemp(join(tmpdir(), 'gantry-base-cache-flip-'));
    try {
      const warmed = await cacheIn(d).warm(ref, AMD64, counted(store, 'v1'));
      const layer = img.manifest.layers[0]!;
      const path = join(warmed.dir, blobPath(layer.digest));
      const bytes = await readFile(path);
      bytes[bytes.length - 1] ^= 0xff;
      await writeFile(path, bytes);
      const found = await cacheIn(d).find(ref, AMD64, counted(store, 'v1'));
      assert.ok(found.hit);
      await assert.rejects(readAll(found.hit.reader, layer), (err: GantryError) => {
        assert.equal(err.code, 'DIGEST_MISMATCH');
        assert.match(err.hint ?? '', new RegExp(`entry ${warmed.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged.*gantry warmer --force`));
        return true;
      });
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it('two warmers of the same image at once leave one intact entry', async () => {
    const d = await mkdtemp(join(tmpdir(), 'gantry-base-cache-race-'));
    try {
      const results = await Promise.all([1, 2, 3].map(() => cacheIn(d).warm(ref, AMD64, counted(store, 'v1'), { force: true })));
      assert.deepEqual(new Set(results.map((r) => r.digest)), new Set([img.raw.digest]));
      assert.ok(await cacheIn(d).open(img.raw.digest));
      assert.deepEqual(await readdir(join(d, 'gantry', 'images')), [img.raw.digest.replace(':', '-')]);
      assert.equal((await stat(join(d, 'gantry', 'tmp'))).isDirectory(), true);
      assert.deepEqual(await readdir(join(d, 'gantry', 'tmp')), []);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
