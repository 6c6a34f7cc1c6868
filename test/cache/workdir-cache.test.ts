/**
 * WORKDIR under the layer cache: the step is keyed and its outcome recorded (the layer it made, or
 * "no layer" when the directory existed), so a fully cached rebuild neither unpacks the base nor
 * downloads any layer blob, and still produces the same image.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildOptions, type BuildResult } from '../../src/build/index.js';
import { NO_LAYER_BLOB } from '../../src/build/cache.js';
import { sha256 } from '../../src/util/digest.js';
import { startFaultProxy, type FaultProxy } from '../../src/testing/fault-proxy.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoPush } from '../../src/testing/skopeo.js';

// The second WORKDIR /app finds the directory already there: BuildKit adds no layer for it.
const DOCKERFILE = (base: string) => `FROM ${base}\nWORKDIR /app\nCOPY a /app/\nWORKDIR /app\nRUN cat a > b\n`;

describe('WORKDIR in the layer cache', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let busybox: TestImage;
  let base: string;
  const dirs: string[] = [];

  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
    busybox = await makeBusyboxImage();
    await skopeoPush(busybox, reg, 'base/busybox:1');
    proxy = await startFaultProxy(reg);
    base = `${proxy.host}/base/busybox:1`;
  });
  after(async () => {
    await proxy?.stop();
    await busybox?.cleanup();
    await reg?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const opts = (ctx: string, dest: string): BuildOptions => ({
    context: ctx,
    destinations: [`${proxy.host}/${dest}`],
    reproducible: true,
    defaultOutputDir: false,
    cache: { enabled: true, copyLayers: true },
  });
  const cached = (r: BuildResult) => r.steps.map((s) => [s.instruction, s.cached, s.layer !== undefined] as const);

  async function manifestLayers(repo: string, tag: string): Promise<string[]> {
    const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    return ((await res.json()) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest);
  }

  it('a no-change rebuild hits both WORKDIRs (layer and no layer), GETs no layer blob and gives the same digest', async () => {
    const ctx = await mkdtemp(join(tmpdir(), 'gantry-workdir-cache-'));
    dirs.push(ctx);
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE(base));
    await writeFile(join(ctx, 'a'), 'alpha\n');

    const cold = await build(opts(ctx, 'app/wd:1'));
    assert.deepEqual(cached(cold), [
      ['WORKDIR /app', false, true],
      ['COPY a /app/', false, true],
      ['WORKDIR /app', false, false],
      ['RUN cat a > b', false, true],
    ]);

    const from = proxy.hits.length;
    const warm = await build(opts(ctx, 'app/wd:2'));
    const hits = proxy.hits.slice(from);
    assert.deepEqual(cached(warm), [
      ['WORKDIR /app', true, true],
      ['COPY a /app/', true, true],
      ['WORKDIR /app', true, false],
      ['RUN cat a > b', true, true],
    ]);
    assert.equal(warm.digest, cold.digest);
    const layers = await manifestLayers('app/wd', '2');
    assert.equal(layers.length, 4, 'base + WORKDIR + COPY + RUN; the second WORKDIR adds none');
    const marker: string = sha256(NO_LAYER_BLOB);
    assert.ok(!layers.includes(marker), 'the "no layer" marker never enters the image');
    const gets = hits.filter((h) => h.method === 'GET' && [...layers, marker].some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(gets, [], 'the warm build downloads no layer blob');
  });
});
