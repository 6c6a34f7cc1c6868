/**
 * Kaniko's base-image cache end to end: `gantry warmer` fills a --cache-dir from a real registry,
 * then `gantry executor --cache-dir` builds without downloading a single base layer (counted at a
 * fault proxy), even with the registry stopped; a miss and a damaged entry fall back to the
 * registry and give the same image.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildOptions } from '../../src/build/index.js';
import { main, type CliIO } from '../../src/cli/main.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoPush } from '../../src/testing/skopeo.js';
import { startCacheFixture, type CacheFixture } from './support.js';

function capture(): CliIO & { out: string; err: string } {
  const io = { out: '', err: '', env: { ...process.env }, stdout: (t: string) => void (io.out += t), stderr: (t: string) => void (io.err += t) };
  return io;
}

async function cli(argv: string[]): Promise<{ out: string; err: string }> {
  const io = capture();
  const code = await main(argv, io);
  assert.equal(code, 0, `gantry ${argv.join(' ')}\n${io.err}`);
  return io;
}

/** The manifest digest an OCI layout's single image has. */
async function layoutDigest(dir: string): Promise<string> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  return index.manifests[0]!.digest;
}

describe('base image cache (warmer + executor --cache-dir)', () => {
  let fx: CacheFixture;
  let baseLayers: string[];
  before(async () => {
    fx = await startCacheFixture();
    baseLayers = await fx.manifestLayers('base/busybox', '1');
  });
  after(async () => {
    await fx?.close();
  });

  /** Base layer blob GETs the proxy saw since `from`. */
  const baseBlobGets = (from: number) => fx.proxy.hits.slice(from).filter((h) => h.method === 'GET' && baseLayers.some((d) => h.path.includes(`/blobs/${d}`))).length;

  async function executor(ctx: string, extra: string[]): Promise<{ digest: string; gets: number; err: string }> {
    const out = await fx.scratch('gantry-base-cache-out-');
    const from = fx.proxy.hits.length;
    const io = await cli(['executor', `--context=${ctx}`, '--no-push', `--oci-layout-path=${out}`, '--reproducible', ...extra]);
    return { digest: await layoutDigest(out), gets: baseBlobGets(from), err: io.err };
  }

  it('a warmed base is read from the cache: zero base layer downloads, the same image as from the registry', async () => {
    const cacheDir = await fx.scratch('gantry-base-cache-');
    const warm = await cli(['warmer', `--cache-dir=${cacheDir}`, `--image=${fx.base}`]);
    assert.match(warm.err, /cached .*busybox:1 as sha256:/);
    const again = await cli(['warmer', `-c`, cacheDir, `-i`, fx.base]);
    assert.match(again.err, /already in the cache/);

    // RUN needs the base's files: they are unpacked from the cache too.
    const ctx = await fx.context(`FROM ${fx.base}\nCOPY app.txt /app.txt\nRUN cat /app.txt /bin/busybox > /dev/null && echo ran > /ran\n`, { 'app.txt': 'hello\n' });
    const cached = await executor(ctx, [`--cache-dir=${cacheDir}`]);
    assert.equal(cached.gets, 0, 'no base layer blob is downloaded');
    assert.match(cached.err, /using sha256:\S+ from the base image cache/);

    const pulled = await executor(ctx, []);
    assert.ok(pulled.gets > 0, 'without the cache the base layers come from the registry');
    assert.equal(cached.digest, pulled.digest);
  });

  it('a miss (empty cache dir) and a damaged entry fall back to the registry and build the same image', async () => {
    const ctx = await fx.context(`FROM ${fx.base}\nCOPY app.txt /app.txt\n`, { 'app.txt': 'miss\n' });
    const reference = await executor(ctx, []);

    const empty = await executor(ctx, [`--cache-dir=${await fx.scratch('gantry-base-cache-empty-')}`, '--cache=true', '--cache-repo', `oci:${await fx.scratch('gantry-layer-cache-')}`]);
    assert.ok(empty.gets > 0);
    assert.equal(empty.digest, reference.digest);

    const cacheDir = await fx.scratch('gantry-base-cache-bad-');
    await cli(['warmer', `--cache-dir=${cacheDir}`, `--image=${fx.base}`]);
    const [entry] = await readdir(join(cacheDir, 'gantry', 'images'));
    await truncate(join(cacheDir, 'gantry', 'images', entry!, 'blobs', 'sha256', baseLayers[0]!.slice('sha256:'.length)), 100);
    const damaged = await executor(ctx, [`--cache-dir=${cacheDir}`]);
    assert.match(damaged.err, /base image cache entry .* is unusable \(blob sha256:\S+ is 100 bytes/);
    assert.ok(damaged.gets > 0);
    assert.equal(damaged.digest, reference.digest);
  });
});

describe('base image cache with the registry stopped', () => {
  let reg: TestRegistry;
  let busybox: TestImage;
  let cacheDir: string;
  let work: CacheFixture;
  let digest: string;
  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
    busybox = await makeBusyboxImage();
    await skopeoPush(busybox, reg, 'base/busybox:1');
    work = await startCacheFixture();
    cacheDir = await work.scratch('gantry-base-cache-offline-');
    const warm = await cli(['warmer', `--cache-dir=${cacheDir}`, `--image=${reg.host}/base/busybox:1`]);
    digest = /as (sha256:[0-9a-f]{64})/.exec(warm.err)![1]!;
    await reg.stop();
  });
  after(async () => {
    await busybox?.cleanup();
    await work?.close();
  });

  const opts = async (from: string, cache: boolean): Promise<BuildOptions> => ({
    context: await work.context(`FROM ${from}\nCOPY app.txt /app.txt\n`, { 'app.txt': 'offline\n' }),
    noPush: true,
    ociLayoutPath: await work.scratch('gantry-offline-out-'),
    defaultOutputDir: false,
    registry: { retries: 0 },
    ...(cache ? { baseImageCache: { dir: cacheDir } } : {}),
  });

  it('a digest-pinned FROM builds from the cache alone', async () => {
    const pinned = `${reg.host}/base/busybox@${digest}`;
    const o = await opts(pinned, true);
    const result = await build(o);
    const manifest = JSON.parse(await readFile(join(o.ociLayoutPath!, 'blobs', 'sha256', result.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
    assert.deepEqual(manifest.layers.slice(0, -1).map((l) => l.digest), busybox.layers.map((l) => l.digest), 'the base layers are in the output');
    await assert.rejects(build(await opts(pinned, false)), { code: 'REGISTRY_UNREACHABLE' }, 'without the cache the build needs the registry');
  });

  it('a tag falls back to the digest it had when warmed, and says so', async () => {
    const lines: string[] = [];
    const o = await opts(`${reg.host}/base/busybox:1`, true);
    const result = await build({ ...o, logger: { log: (level, msg) => lines.push(`${level}: ${msg}`) } });
    assert.match(result.digest, /^sha256:/);
    assert.match(lines.join('\n'), new RegExp(`^warn: .*cannot be reached.*using ${digest}`, 'm'));
  });
});
