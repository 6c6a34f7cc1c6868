import assert from 'node:assert/strict';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { copyImage } from './copy.js';
import { blobPath } from './descriptor.js';
import { OciLayoutReader, OciLayoutWriter } from './layout.js';
import { MemoryStore } from './memory.js';
import { randomImage, randomIndex } from './random.js';

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const haveSkopeo = (await run('skopeo', ['--version']).catch(() => ({ code: 127 }))).code === 0;
const haveUmoci = (await run('umoci', ['--version']).catch(() => ({ code: 127 }))).code === 0;

describe('OCI image layout', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('oci-layout');
  });
  after(() => tmp.cleanup());

  test('an image written under a tag reads back byte for byte', async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 3 }, 'src');
    const dir = join(tmp.path, 'roundtrip');
    const w = await OciLayoutWriter.create(dir);
    await copyImage(mem, 'src', w, { tags: ['v1'] });
    await w.commit();

    assert.equal(await readFile(join(dir, 'oci-layout'), 'utf8'), '{"imageLayoutVersion":"1.0.0"}');
    const r = await OciLayoutReader.open(dir, 'v1');
    const raw = await r.getManifest();
    assert.equal(raw.digest, img.raw.digest);
    assert.deepEqual(raw.bytes, img.raw.bytes);
    for (const l of img.manifest.layers) assert.deepEqual(await readAll(await r.openBlob(l)), mem.blobs.get(l.digest));
    // No temporary files are left in blobs/.
    const names = await readdir(join(dir, 'blobs', 'sha256'));
    assert.ok(names.every((n) => /^[a-f0-9]{64}$/.test(n)), names.join(','));
  });

  test('committing a tag replaces the entry with that tag and keeps the others', async () => {
    const dir = join(tmp.path, 'tags');
    const mem = new MemoryStore();
    const a = await randomImage(mem, {}, 'a');
    const b = await randomImage(mem, {}, 'b');
    const c = await randomImage(mem, {}, 'c');
    for (const [ref, tag] of [['a', 'one'], ['b', 'two'], ['c', 'one']] as const) {
      const w = await OciLayoutWriter.create(dir);
      await copyImage(mem, ref, w, { tags: [tag] });
      await w.commit();
    }
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    const byTag = Object.fromEntries(index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]));
    assert.deepEqual(byTag, { two: b.raw.digest, one: c.raw.digest });
    assert.notEqual(byTag.one, a.raw.digest);

    const r = await OciLayoutReader.open(dir);
    await assert.rejects(r.getManifest(), (e) => isGantryError(e, 'INVALID_ARGUMENT') && /one/.test(e.message) && /two/.test(e.message));
    await assert.rejects(r.getManifest('three'), (e) => isGantryError(e, 'NOT_FOUND') && /tags: /.test(e.message));
    assert.equal((await r.getManifest(b.raw.digest)).digest, b.raw.digest);
  });

  test('a corrupted blob fails with DIGEST_MISMATCH while it is read', async () => {
    const dir = join(tmp.path, 'corrupt');
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 1 }, 'x');
    const w = await OciLayoutWriter.create(dir);
    await copyImage(mem, 'x', w, { tags: ['x'] });
    await w.commit();
    const layer = img.manifest.layers[0]!;
    const path = join(dir, blobPath(layer.digest));
    const bytes = await readFile(path);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(path, bytes);
    const r = await OciLayoutReader.open(dir, 'x');
    await assert.rejects(readAll(await r.openBlob(layer)), (e) => isGantryError(e, 'DIGEST_MISMATCH'));
  });

  test('a directory without oci-layout is refused with a hint', async () => {
    const dir = join(tmp.path, 'notalayout');
    await writeFile(join(tmp.path, 'file'), 'x');
    await assert.rejects(OciLayoutReader.open(dir), (e) => isGantryError(e, 'LAYOUT_INVALID') && e.hint !== undefined);
    await assert.rejects(OciLayoutWriter.create(tmp.path), (e) => isGantryError(e, 'LAYOUT_INVALID'));
  });

  test('skopeo reads what we write, and copying it preserves every digest', { skip: haveSkopeo ? false : 'skopeo not installed' }, async () => {
    const mem = new MemoryStore();
    const idx = await randomIndex(mem, [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }], {}, 'multi');
    const img = await randomImage(mem, { layers: 2 }, 'single');
    const a = join(tmp.path, 'skopeo-a');
    const b = join(tmp.path, 'skopeo-b');
    const w = await OciLayoutWriter.create(a);
    await copyImage(mem, 'single', w, { tags: ['t'] });
    await copyImage(mem, 'multi', w, { tags: ['m'] });
    await w.commit();

    const rawOut = await run('skopeo', ['inspect', '--raw', `oci:${a}:t`], { check: true });
    assert.equal(rawOut.stdout, img.raw.bytes.toString('utf8'));
    const info = JSON.parse((await run('skopeo', ['inspect', `oci:${a}:t`], { check: true })).stdout) as { Digest: string; Layers: string[] };
    assert.equal(info.Digest, img.raw.digest);
    assert.deepEqual(info.Layers, img.manifest.layers.map((l) => l.digest));

    await run('skopeo', ['copy', '--all', `oci:${a}:m`, `oci:${b}:m`], { check: true });
    await run('skopeo', ['copy', `oci:${a}:t`, `oci:${b}:t`], { check: true });
    const rb = await OciLayoutReader.open(b);
    assert.equal((await rb.getManifest('t')).digest, img.raw.digest);
    assert.equal((await rb.getManifest('m')).digest, idx.raw.digest);
  });

  test('umoci accepts the layout', { skip: haveUmoci ? false : 'umoci not installed' }, async () => {
    const mem = new MemoryStore();
    await randomImage(mem, { layers: 1 }, 'u');
    const dir = join(tmp.path, 'umoci');
    const w = await OciLayoutWriter.create(dir);
    await copyImage(mem, 'u', w, { tags: ['u'] });
    await w.commit();
    const ls = await run('umoci', ['ls', '--layout', dir], { check: true });
    assert.equal(ls.stdout.trim(), 'u');
    await run('umoci', ['stat', '--image', `${dir}:u`], { check: true });
  });
});
