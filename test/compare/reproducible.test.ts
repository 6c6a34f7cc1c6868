/**
 * `reproducible: true`: the same inputs give the same image digest, whenever and however often
 * they are built. Without SOURCE_DATE_EPOCH every timestamp is clamped to 0 (Kaniko's
 * --reproducible), so even touching the context between builds changes nothing. With
 * SOURCE_DATE_EPOCH, `created` (config and history) is that time and file mtimes newer than it
 * are clamped to it, older ones kept (BuildKit's rewrite-timestamp semantics).
 */
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { ImageConfig } from '../../src/oci/types.js';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { layoutLayers } from '../../src/testing/tree.js';
import { CONTEXT_MTIME, comparisonDir, gantryBuild, writeContext, type CompareInput } from './support.js';

const DOCKERFILE = `
ARG BASE
FROM \${BASE} AS assets
COPY data/ /data/

FROM \${BASE}
ENV APP=/app
LABEL org.example.kind=reproducible
WORKDIR /app
COPY . /app/src/
COPY --from=assets /data /app/data
COPY --chmod=0700 run.sh /usr/local/bin/run
CMD ["/usr/local/bin/run"]
`;

const FILES = {
  Dockerfile: DOCKERFILE,
  'run.sh': { content: '#!/bin/sh\necho run\n', mode: 0o755 },
  'main.js': 'console.log(1)\n',
  'lib/a.js': 'a\n',
  'lib/deep/b.js': 'b\n',
  'data/x.json': '{}\n',
  'data/y/z.txt': 'z\n',
};

const SOURCE_DATE_EPOCH = 1_700_000_000;
const LATER = 1_750_000_000;

/** mtimes (seconds) of every entry in the layers gantry added on top of the one-layer base. */
async function newLayerMtimes(layout: string, baseLayers: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const desc of (await layoutLayers(layout)).slice(baseLayers)) {
    const extract = tar.extract();
    const done = new Promise<void>((resolve, reject) => {
      extract.on('finish', resolve);
      extract.on('error', reject);
    });
    extract.on('entry', (header, body, next) => {
      out.set(header.name, Math.floor((header.mtime?.getTime() ?? NaN) / 1000));
      body.on('end', next);
      body.resume();
    });
    const file = createReadStream(join(layout, 'blobs', ...desc.digest.split(':')));
    file.pipe(createGunzip()).pipe(extract);
    await done;
  }
  return out;
}

async function configOf(layout: string, digest: string): Promise<ImageConfig> {
  const manifest = JSON.parse(await readFile(join(layout, 'blobs', ...digest.split(':')), 'utf8')) as { config: { digest: string } };
  return JSON.parse(await readFile(join(layout, 'blobs', ...manifest.config.digest.split(':')), 'utf8')) as ImageConfig;
}

/** Sets every context file's mtime (not the directories': those are what a checkout would touch too). */
async function touchAll(ctx: string, seconds: number): Promise<void> {
  for (const rel of Object.keys(FILES)) await utimes(join(ctx, rel), seconds, seconds);
}

describe('reproducible builds', () => {
  let base: BaseImage;
  let dirs: Awaited<ReturnType<typeof comparisonDir>>;
  let input: CompareInput;
  before(async () => {
    base = await busyboxBase();
    dirs = await comparisonDir('compare-reproducible');
    await writeContext(dirs.ctx, FILES);
    input = { contextDir: dirs.ctx, outDir: dirs.root, base: { name: 'busybox', image: base }, gantry: { reproducible: true } };
  });
  after(async () => {
    await dirs?.cleanup();
  });

  it('without SOURCE_DATE_EPOCH: rebuilding, even after touching the context, gives the same digest; all times are 0', async () => {
    const first = await gantryBuild(input, 'plain-1');
    const second = await gantryBuild(input, 'plain-2');
    await touchAll(dirs.ctx, LATER);
    const touched = await gantryBuild(input, 'plain-touched');
    await touchAll(dirs.ctx, CONTEXT_MTIME);
    assert.equal(second.result.digest, first.result.digest);
    assert.equal(touched.result.digest, first.result.digest);

    const config = await configOf(first.layout, first.result.digest);
    assert.equal(config.created, '1970-01-01T00:00:00Z');
    for (const h of config.history ?? []) {
      // The base's own history entry keeps the base's time; every entry gantry adds is clamped.
      if (h.created_by === 'busybox-static rootfs') continue;
      assert.equal(h.created, '1970-01-01T00:00:00Z', `history "${h.created_by}"`);
    }
    const mtimes = await newLayerMtimes(first.layout, 1);
    assert.ok(mtimes.size >= 8, `${mtimes.size} entries in the new layers`);
    assert.deepEqual([...new Set(mtimes.values())], [0]);
  });

  it('with SOURCE_DATE_EPOCH: same digest twice, created is that time, newer mtimes are clamped to it and older kept', async () => {
    const withEpoch: CompareInput = { ...input, gantry: { reproducible: true, env: { SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH) } } };
    const first = await gantryBuild(withEpoch, 'epoch-1');
    const second = await gantryBuild(withEpoch, 'epoch-2');
    assert.equal(second.result.digest, first.result.digest);
    // BuildKit takes it as a build argument (what buildx passes on); the result is the same.
    const viaArg = await gantryBuild({ ...input, buildArgs: { SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH) } }, 'epoch-arg');
    assert.equal(viaArg.result.digest, first.result.digest);
    const plain = await gantryBuild(input, 'epoch-plain');
    assert.notEqual(first.result.digest, plain.result.digest, 'SOURCE_DATE_EPOCH is part of the result');

    const config = await configOf(first.layout, first.result.digest);
    assert.equal(config.created, '2023-11-14T22:13:20Z');
    assert.equal(Date.parse(config.created!) / 1000, SOURCE_DATE_EPOCH);
    const added = (config.history ?? []).filter((h) => h.created_by !== 'busybox-static rootfs');
    assert.ok(added.length >= 6, `${added.length} history entries`);
    for (const h of added) assert.equal(h.created, '2023-11-14T22:13:20Z', `history "${h.created_by}"`);

    // Context files are older than the epoch (CONTEXT_MTIME) and keep their time; directories
    // the build creates now are newer and get the epoch.
    const mtimes = await newLayerMtimes(first.layout, 1);
    assert.equal(mtimes.get('app/src/main.js'), CONTEXT_MTIME);
    assert.equal(mtimes.get('app/data/y/z.txt'), CONTEXT_MTIME);
    for (const [name, t] of mtimes) assert.ok(t <= SOURCE_DATE_EPOCH, `${name} mtime ${t}`);

    await touchAll(dirs.ctx, LATER);
    const touched = await gantryBuild(withEpoch, 'epoch-touched');
    await touchAll(dirs.ctx, CONTEXT_MTIME);
    const touchedMtimes = await newLayerMtimes(touched.layout, 1);
    assert.equal(touchedMtimes.get('app/src/main.js'), SOURCE_DATE_EPOCH);
  });
});
