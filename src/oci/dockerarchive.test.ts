import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync, gunzipSync } from 'node:zlib';
import { indexTar } from '../archive/index.js';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { sha256 } from '../util/digest.js';
import { isGantryError } from '../util/errors.js';
import { copyImage } from './copy.js';
import { DockerArchiveReader } from './dockerarchive.js';
import { DockerArchiveWriter } from './dockerarchive-writer.js';
import { OciLayoutReader, OciLayoutWriter } from './layout.js';
import { parseManifest } from './manifest.js';
import { MemoryStore } from './memory.js';
import { randomImage, randomIndex, smallTar } from './random.js';
import { MediaType } from './types.js';

const haveSkopeo = (await run('skopeo', ['--version']).catch(() => ({ code: 127 }))).code === 0;

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function archiveOf(mem: MemoryStore, ref: string, file: string, tags: string[]): Promise<void> {
  const w = await DockerArchiveWriter.create(file);
  await copyImage(mem, ref, w, { tags });
  await w.commit();
}

describe('docker-archive', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('docker-archive');
  });
  after(() => tmp.cleanup());

  test('what we write has the members docker save (>= 25) writes', async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 2 }, 'x');
    const file = join(tmp.path, 'members.tar');
    await archiveOf(mem, 'x', file, ['alpine:3', 'ghcr.io/o/app:1']);
    const idx = await indexTar(file);
    const files = [...idx.members.values()].filter((m) => m.type === 'file').map((m) => m.name);
    const blobs = [img.raw.digest, img.configDescriptor.digest, ...img.manifest.layers.map((l) => l.digest)].map((d) => `blobs/sha256/${d.slice(7)}`);
    assert.deepEqual(files, [...blobs.sort(), 'index.json', 'manifest.json', 'oci-layout', 'repositories']);
    const r = await DockerArchiveReader.open(file);
    assert.deepEqual(r.entries, [
      {
        Config: `blobs/sha256/${img.configDescriptor.digest.slice(7)}`,
        RepoTags: ['alpine:3', 'ghcr.io/o/app:1'],
        Layers: img.manifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      },
    ]);
    const top = img.manifest.layers.at(-1)!.digest.slice(7);
    const fromTar = await run('tar', ['-xOf', file, 'repositories'], { check: true });
    assert.deepEqual(JSON.parse(fromTar.stdout), { alpine: { '3': top }, 'ghcr.io/o/app': { '1': top } });
    const index = JSON.parse((await run('tar', ['-xOf', file, 'index.json'], { check: true })).stdout);
    assert.deepEqual(index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations), [
      { 'io.containerd.image.name': 'docker.io/library/alpine:3', 'org.opencontainers.image.ref.name': '3' },
      { 'io.containerd.image.name': 'ghcr.io/o/app:1', 'org.opencontainers.image.ref.name': '1' },
    ]);
    assert.deepEqual(index.manifests[0].platform, { architecture: 'amd64', os: 'linux' });
    // Every tag, in familiar or full form, finds the image.
    for (const ref of ['alpine:3', 'docker.io/library/alpine:3', 'ghcr.io/o/app:1', '@0', undefined]) {
      assert.equal((await (await DockerArchiveReader.open(file, ref)).getManifest()).digest, img.raw.digest, String(ref));
    }
    await assert.rejects(r.getManifest('alpine:4'), (e) => isGantryError(e, 'NOT_FOUND') && e.message.includes('alpine:3, ghcr.io/o/app:1'));
  });

  test('an index, a digest as tag and a missing blob are refused', async () => {
    const mem = new MemoryStore();
    const idx = await randomIndex(mem, [{ os: 'linux', architecture: 'amd64' }], {}, 'multi');
    const w = await DockerArchiveWriter.create(join(tmp.path, 'refused.tar'));
    await assert.rejects(w.putManifest(idx.raw, ['a:b']), (e) => isGantryError(e, 'UNSUPPORTED') && e.hint !== undefined);
    await assert.rejects(w.putManifest(idx.images[0]!.raw, ['a@sha256:' + 'a'.repeat(64)]), (e) => isGantryError(e, 'REFERENCE_INVALID'));
    await assert.rejects(w.putManifest(idx.images[0]!.raw, ['a:b']), (e) => isGantryError(e, 'INTERNAL') && /must be written before/.test(e.message));
    await w.abort();
  });

  test('legacy archives (manifest.json + <id>/layer.tar) get a synthesized Docker manifest', async () => {
    const layerA = await smallTar([{ name: 'a.txt', content: 'A' }]);
    const layerB = await smallTar([{ name: 'b.txt', content: 'B' }]);
    const gzA = gzipSync(layerA);
    const config = Buffer.from(
      JSON.stringify({ architecture: 'arm64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layerA), sha256(layerB), sha256(layerB)] } }),
    );
    const root = join(tmp.path, 'legacy');
    await mkdir(join(root, 'l1'), { recursive: true });
    await mkdir(join(root, 'l2'), { recursive: true });
    await writeFile(join(root, 'l1', 'layer.tar'), gzA);
    await writeFile(join(root, 'l2', 'layer.tar'), layerB);
    await mkdir(join(root, 'l3'));
    // docker save links repeated layers to the first copy.
    await symlink('../l2/layer.tar', join(root, 'l3', 'layer.tar'));
    await writeFile(join(root, `${sha256(config).slice(7)}.json`), config);
    await writeFile(
      join(root, 'manifest.json'),
      JSON.stringify([{ Config: `${sha256(config).slice(7)}.json`, RepoTags: ['legacy:1'], Layers: ['l1/layer.tar', 'l2/layer.tar', 'l3/layer.tar'] }]),
    );
    const file = join(tmp.path, 'legacy.tar');
    await run('tar', ['-cf', file, '-C', root, '.'], { check: true });

    const r = await DockerArchiveReader.open(file);
    const raw = await r.getManifest();
    const parsed = parseManifest(raw);
    assert.equal(parsed.kind, 'manifest');
    if (parsed.kind !== 'manifest') return;
    assert.equal(parsed.mediaType, MediaType.DockerManifest);
    assert.deepEqual(parsed.manifest.config, { mediaType: MediaType.DockerConfig, digest: sha256(config), size: config.length });
    assert.deepEqual(
      parsed.manifest.layers.map((l) => [l.mediaType, l.digest, l.size]),
      [
        [MediaType.DockerLayerGzip, sha256(gzA), gzA.length],
        [MediaType.DockerLayer, sha256(layerB), layerB.length],
        [MediaType.DockerLayer, sha256(layerB), layerB.length],
      ],
    );
    assert.deepEqual(gunzipSync(await readAll(await r.openBlob(parsed.manifest.layers[0]!))), layerA);
    const out = join(tmp.path, 'legacy-layout');
    const w = await OciLayoutWriter.create(out);
    const res = await copyImage(r, undefined, w, { tags: ['l'] });
    await w.commit();
    assert.equal(res.digest, raw.digest);
    assert.equal((await (await OciLayoutReader.open(out, 'l')).getManifest()).digest, raw.digest);
  });

  test('an archive whose index.json points at an index (containerd image store) yields the exact platform manifest', async () => {
    const mem = new MemoryStore();
    const idx = await randomIndex(mem, [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }], {}, 'multi');
    const root = join(tmp.path, 'containerd-shape');
    const w = await OciLayoutWriter.create(root);
    await copyImage(mem, 'multi', w, { tags: ['1'] });
    await w.commit();
    // docker save only includes the host platform's blobs.
    const [keep, drop] = idx.images;
    for (const d of [drop!.raw.digest, drop!.configDescriptor.digest, ...drop!.manifest.layers.map((l) => l.digest)]) {
      await rm(join(root, 'blobs', 'sha256', d.slice(7)));
    }
    await writeFile(
      join(root, 'manifest.json'),
      JSON.stringify([{ Config: `blobs/sha256/${keep!.configDescriptor.digest.slice(7)}`, RepoTags: ['app:1'], Layers: keep!.manifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`) }]),
    );
    const file = join(tmp.path, 'containerd-shape.tar');
    await run('tar', ['-cf', file, '-C', root, '.'], { check: true });
    const r = await DockerArchiveReader.open(file, 'app:1');
    assert.equal((await r.getManifest()).digest, keep!.raw.digest);
  });

  test('skopeo inspects what we write and copies it to a layout with the same config and layers', { skip: haveSkopeo ? false : 'skopeo not installed' }, async () => {
    const mem = new MemoryStore();
    const gz = await randomImage(mem, { layers: 2 }, 'gz');
    const file = join(tmp.path, 'skopeo.tar');
    await archiveOf(mem, 'gz', file, ['example/app:1']);
    const info = JSON.parse((await run('skopeo', ['inspect', `docker-archive:${file}`], { check: true })).stdout) as { Layers: string[]; Architecture: string };
    // skopeo 1.x reads the legacy half of the archive and names layers by diff_id.
    assert.deepEqual(info.Layers, gz.config.rootfs.diff_ids);
    assert.equal(info.Architecture, 'amd64');

    const out = join(tmp.path, 'skopeo-out');
    await run('skopeo', ['copy', '-q', `docker-archive:${file}`, `oci:${out}:t`], { check: true });
    const copied = parseManifest(await (await OciLayoutReader.open(out, 't')).getManifest());
    assert.ok(copied.kind === 'manifest');
    assert.equal(copied.manifest.config.digest, gz.configDescriptor.digest);

    // With uncompressed layers nothing needs recompressing, so skopeo keeps the layer digests too.
    const plain = await randomImage(mem, { layers: 2, compression: 'none' }, 'plain');
    const file2 = join(tmp.path, 'plain.tar');
    await archiveOf(mem, 'plain', file2, ['example/plain:1']);
    const dir = join(tmp.path, 'skopeo-dir');
    await run('skopeo', ['copy', '-q', `docker-archive:${file2}`, `dir:${dir}`], { check: true });
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
    assert.equal(m.config.digest, plain.configDescriptor.digest);
    assert.deepEqual(m.layers.map((l) => l.digest), plain.manifest.layers.map((l) => l.digest));
  });

  test('archives written by skopeo read back with the original config', { skip: haveSkopeo ? false : 'skopeo not installed' }, async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 2 }, 'x');
    const layout = join(tmp.path, 'for-skopeo');
    const w = await OciLayoutWriter.create(layout);
    await copyImage(mem, 'x', w, { tags: ['t'] });
    await w.commit();
    const file = join(tmp.path, 'by-skopeo.tar');
    await run('skopeo', ['copy', '-q', `oci:${layout}:t`, `docker-archive:${file}:example/x:t`], { check: true });
    const r = await DockerArchiveReader.open(file, 'example/x:t');
    const parsed = parseManifest(await r.getManifest());
    assert.ok(parsed.kind === 'manifest');
    assert.equal(parsed.manifest.config.digest, img.configDescriptor.digest);
    assert.equal(parsed.manifest.layers.length, 2);
    const out = new MemoryStore();
    await copyImage(r, undefined, out, { tags: ['y'] });
    assert.equal(out.blobs.get(img.configDescriptor.digest)?.length, img.configDescriptor.size);
  });

  test('a staged blob that cannot be read fails the commit and leaves no archive, temp file or staging directory', async () => {
    const mem = new MemoryStore();
    const img = await randomImage(mem, { layers: 2 }, 'x');
    const dir = join(tmp.path, 'broken-commit');
    await mkdir(dir);
    const file = join(dir, 'out.tar');
    const w = await DockerArchiveWriter.create(file);
    await copyImage(mem, 'x', w, { tags: ['a:1'] });
    // A directory where the layer should be: listed like a blob, unreadable as one.
    const [staging] = await readdir(dir);
    const layer = join(dir, staging!, 'blobs', 'sha256', img.manifest.layers[1]!.digest.slice(7));
    await rm(layer);
    await mkdir(layer);
    await assert.rejects(w.commit(), (e) => isGantryError(e, 'IO') && e.message.startsWith(`writing docker-archive:${file}`) && /EISDIR/.test(e.message));
    assert.deepEqual(await readdir(dir), []);
  });

  test('an archive with several images asks which one', async () => {
    const mem = new MemoryStore();
    const a = await randomImage(mem, {}, 'a');
    const b = await randomImage(mem, {}, 'b');
    const file = join(tmp.path, 'two.tar');
    const w = await DockerArchiveWriter.create(file);
    await copyImage(mem, 'a', w, { tags: ['one:1'] });
    await copyImage(mem, 'b', w, { tags: ['two:2'] });
    await w.commit();
    const r = await DockerArchiveReader.open(file);
    await assert.rejects(r.getManifest(), (e) => isGantryError(e, 'INVALID_ARGUMENT') && e.message.includes('one:1, two:2'));
    assert.equal((await r.getManifest('two:2')).digest, b.raw.digest);
    assert.equal((await r.getManifest('@0')).digest, a.raw.digest);
    assert.equal((await r.getManifest(a.raw.digest)).digest, a.raw.digest);
  });
});
