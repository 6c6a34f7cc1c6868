import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { writeLayer } from '../archive/index.js';
import { cacheKey } from './keys.js';
import { LocalCacheStore } from './local-store.js';
import { openCacheStore, parseCacheSpec } from './spec.js';

let tmp: TempDir;
before(async () => {
  tmp = await tempDir('cache-local');
});
after(async () => {
  await tmp?.cleanup();
});

const HOUR = 3_600_000;
let seq = 0;
async function makeLayer(content: string) {
  const file = join(tmp.path, `layer-${seq++}.tar.gz`);
  const body = Buffer.from(content);
  const r = await writeLayer([{ header: { name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: body.length }, body }], file, { compression: 'gzip', parallel: false });
  return { desc: { mediaType: r.mediaType, digest: r.digest, size: r.size }, diffId: r.diffId, file };
}
const key = (s: string) => cacheKey({ parent: 'scratch', platform: 'linux/amd64', instruction: { kind: 'run', args: [s] } });

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('local cache: what one build writes with type=local,dest another reads with type=local,src', async () => {
  const dir = join(tmp.path, 'shared');
  const writer = openCacheStore(parseCacheSpec(`type=local,dest=${dir}`, 'to'));
  const layers = await Promise.all([0, 1, 2].map((i) => makeLayer(`local ${i}`)));
  for (const [i, l] of layers.entries()) {
    void writer.put(key(`k${i}`), { layer: l.desc, diffId: l.diffId, history: { created_by: `RUN k${i}` }, configExtras: { i } }, async () => createReadStream(l.file));
  }
  const results = await writer.flush();
  assert.equal(results.length, 3);
  assert.ok(results.every((r) => r.ok));
  assert.equal((await readdir(join(dir, 'keys'))).length, 3);

  const reader = openCacheStore(parseCacheSpec(`type=local,src=${dir}`, 'from'));
  for (const [i, l] of layers.entries()) {
    const hit = await reader.get(key(`k${i}`));
    assert.ok(hit);
    assert.deepEqual(hit.layer, l.desc);
    assert.equal(hit.history.created_by, `RUN k${i}`);
    assert.deepEqual(hit.configExtras, { i });
    assert.deepEqual(await readAll(await hit.open()), await readAll(createReadStream(l.file)));
  }
  assert.equal(await reader.get(key('absent')), undefined);
});

test('local cache: TTL, a missing blob and a blob source that fails', async () => {
  const dir = join(tmp.path, 'ttl');
  const now = new Date();
  const store = new LocalCacheStore(dir, { ttlMs: HOUR, now: () => now });
  const l = await makeLayer('ttl');
  const old = await store.put(key('old'), { layer: l.desc, diffId: l.diffId, history: {}, createdAt: new Date(now.getTime() - 2 * HOUR) }, async () => createReadStream(l.file));
  assert.equal(old.ok, true);
  assert.equal(await store.get(key('old')), undefined, 'expired');

  await store.put(key('fresh'), { layer: l.desc, diffId: l.diffId, history: {} }, async () => createReadStream(l.file));
  assert.ok(await store.get(key('fresh')));
  await rm(join(dir, 'blobs', 'sha256', l.desc.digest.slice(7)));
  assert.equal(await store.get(key('fresh')), undefined, 'a record without its blob is a miss');

  const other = await makeLayer('other');
  const wrong = await store.put(key('wrong'), { layer: other.desc, diffId: other.diffId, history: {} }, async () => Readable.from([Buffer.from('not the layer')]));
  assert.equal(wrong.ok, false);
  assert.equal(await store.get(key('wrong')), undefined, 'a blob that fails verification is not stored');
});

test('local cache: a directory that cannot be created gives a warning, not an exception', async () => {
  // A regular file where the cache directory should be: fails for root too (ENOTDIR).
  const blocker = join(tmp.path, 'blocker');
  await writeFile(blocker, 'x');
  const l = await makeLayer('blocked');
  const r = await new LocalCacheStore(join(blocker, 'cache')).put(key('blocked'), { layer: l.desc, diffId: l.diffId, history: {} }, async () => createReadStream(l.file));
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.warning.includes(l.desc.digest));
});

test('local cache: a corrupt key record is a miss with a warning', async () => {
  const dir = join(tmp.path, 'corrupt');
  const warnings: string[] = [];
  const store = new LocalCacheStore(dir, { logger: { log: (lvl, msg) => void (lvl === 'warn' && warnings.push(msg)) } });
  await mkdir(join(dir, 'keys'), { recursive: true });
  await writeFile(join(dir, 'keys', `${key('bad').slice(7)}.json`), '{oops');
  assert.equal(await store.get(key('bad')), undefined);
  assert.equal(warnings.length, 1);
});
