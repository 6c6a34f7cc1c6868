/**
 * COPY --from=<stage> under the layer cache: keyed by the source stage's final key, so a no-change
 * multistage rebuild neither unpacks the builder nor downloads any layer blob, and a change to the
 * builder's input makes the copy miss.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildResult } from '../../src/build/index.js';
import { startCacheFixture, type CacheFixture } from './support.js';

const DOCKERFILE = (base: string) =>
  `FROM ${base} AS builder\nCOPY src /src\nRUN cat /src > /artifact\n` + `FROM ${base}\nCOPY --from=builder /artifact /app/artifact\n`;

describe('COPY --from=<stage> in the layer cache', () => {
  let fx: CacheFixture;
  before(async () => {
    fx = await startCacheFixture();
  });
  after(async () => {
    await fx?.close();
  });

  const cached = (r: BuildResult) => r.steps.map((s) => [s.instruction, s.cached] as const);

  it('a no-change rebuild hits every step, GETs no layer blob and gives the same digest; a changed builder input misses', async () => {
    const ctx = await fx.context(DOCKERFILE(fx.base), { src: 'one\n' });

    const cold = await build(fx.opts(ctx, 'app/cf:1'));
    assert.deepEqual(cached(cold), [
      ['COPY src /src', false],
      ['RUN cat /src > /artifact', false],
      ['COPY --from=builder /artifact /app/artifact', false],
    ]);

    const builderLayers = new Set<string>();
    for (const s of cold.steps) if (s.layer) builderLayers.add(s.layer);
    const from = fx.proxy.hits.length;
    const warm = await build(fx.opts(ctx, 'app/cf:2'));
    const hits = fx.proxy.hits.slice(from);
    assert.deepEqual(cached(warm), [
      ['COPY src /src', true],
      ['RUN cat /src > /artifact', true],
      ['COPY --from=builder /artifact /app/artifact', true],
    ]);
    assert.equal(warm.digest, cold.digest);
    const layers = await fx.manifestLayers('app/cf', '2');
    assert.equal(layers.length, 2, 'base + COPY --from');
    const all = [...new Set([...layers, ...builderLayers])];
    const gets = hits.filter((h) => h.method === 'GET' && all.some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(gets, [], 'the warm build downloads no layer blob (base, builder or final)');

    await writeFile(join(ctx, 'src'), 'two\n');
    const changed = await build(fx.opts(ctx, 'app/cf:3'));
    assert.deepEqual(cached(changed), [
      ['COPY src /src', false],
      ['RUN cat /src > /artifact', false],
      ['COPY --from=builder /artifact /app/artifact', false],
    ]);
    assert.notEqual(changed.digest, cold.digest);
  });

  it('COPY --from=<image> is keyed by the image digest: a rebuild hits without downloading any of its layers', async () => {
    const ctx = await fx.context(`FROM scratch\nCOPY --from=${fx.base} /etc/passwd /passwd\n`, {});
    const cold = await build(fx.opts(ctx, 'app/cfi:1'));
    assert.deepEqual(cached(cold), [[`COPY --from=${fx.base} /etc/passwd /passwd`, false]]);
    const baseLayers = await fx.manifestLayers('base/busybox', '1');
    const from = fx.proxy.hits.length;
    const warm = await build(fx.opts(ctx, 'app/cfi:2'));
    assert.deepEqual(cached(warm), [[`COPY --from=${fx.base} /etc/passwd /passwd`, true]]);
    assert.equal(warm.digest, cold.digest);
    const gets = fx.proxy.hits.slice(from).filter((h) => h.method === 'GET' && baseLayers.some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(gets, [], "the image's layers are not downloaded on a hit");
  });
});
