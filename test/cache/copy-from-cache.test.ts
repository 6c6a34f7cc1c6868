/**
 * COPY --from=<stage> under the layer cache: keyed by the source stage's final key, so a no-change
 * multistage rebuild neither unpacks the builder nor downloads any layer blob, and a change to the
 * builder's input makes the copy miss.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildOptions, type BuildResult } from '../../src/build/index.js';
import { startFaultProxy, type FaultProxy } from '../../src/testing/fault-proxy.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoPush } from '../../src/testing/skopeo.js';

const DOCKERFILE = (base: string) =>
  `FROM ${base} AS builder\nCOPY src /src\nRUN cat /src > /artifact\n` + `FROM ${base}\nCOPY --from=builder /artifact /app/artifact\n`;

describe('COPY --from=<stage> in the layer cache', () => {
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
  const cached = (r: BuildResult) => r.steps.map((s) => [s.instruction, s.cached] as const);

  async function manifestLayers(repo: string, tag: string): Promise<string[]> {
    const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    return ((await res.json()) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest);
  }

  it('a no-change rebuild hits every step, GETs no layer blob and gives the same digest; a changed builder input misses', async () => {
    const ctx = await mkdtemp(join(tmpdir(), 'gantry-copy-from-cache-'));
    dirs.push(ctx);
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE(base));
    await writeFile(join(ctx, 'src'), 'one\n');

    const cold = await build(opts(ctx, 'app/cf:1'));
    assert.deepEqual(cached(cold), [
      ['COPY src /src', false],
      ['RUN cat /src > /artifact', false],
      ['COPY --from=builder /artifact /app/artifact', false],
    ]);

    const builderLayers = new Set<string>();
    for (const s of cold.steps) if (s.layer) builderLayers.add(s.layer);
    const from = proxy.hits.length;
    const warm = await build(opts(ctx, 'app/cf:2'));
    const hits = proxy.hits.slice(from);
    assert.deepEqual(cached(warm), [
      ['COPY src /src', true],
      ['RUN cat /src > /artifact', true],
      ['COPY --from=builder /artifact /app/artifact', true],
    ]);
    assert.equal(warm.digest, cold.digest);
    const layers = await manifestLayers('app/cf', '2');
    assert.equal(layers.length, 2, 'base + COPY --from');
    const all = [...new Set([...layers, ...builderLayers])];
    const gets = hits.filter((h) => h.method === 'GET' && all.some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(gets, [], 'the warm build downloads no layer blob (base, builder or final)');

    await writeFile(join(ctx, 'src'), 'two\n');
    const changed = await build(opts(ctx, 'app/cf:3'));
    assert.deepEqual(cached(changed), [
      ['COPY src /src', false],
      ['RUN cat /src > /artifact', false],
      ['COPY --from=builder /artifact /app/artifact', false],
    ]);
    assert.notEqual(changed.digest, cold.digest);
  });
});
