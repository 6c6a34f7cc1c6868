/**
 * WORKDIR under the layer cache: the step is keyed and its outcome recorded (the layer it made, or
 * "no layer" when the directory existed), so a fully cached rebuild neither unpacks the base nor
 * downloads any layer blob, and still produces the same image.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildResult } from '../../src/build/index.js';
import { startCacheFixture, type CacheFixture } from './support.js';
import { NO_LAYER_BLOB } from '../../src/build/cache.js';
import { sha256 } from '../../src/util/digest.js';

// The second WORKDIR /app finds the directory already there: BuildKit adds no layer for it.
const DOCKERFILE = (base: string) => `FROM ${base}\nWORKDIR /app\nCOPY a /app/\nWORKDIR /app\nRUN cat a > b\n`;

describe('WORKDIR in the layer cache', () => {
  let fx: CacheFixture;
  before(async () => {
    fx = await startCacheFixture();
  });
  after(async () => {
    await fx?.close();
  });

  const cached = (r: BuildResult) => r.steps.map((s) => [s.instruction, s.cached, s.layer !== undefined] as const);

  it('a no-change rebuild hits both WORKDIRs (layer and no layer), GETs no layer blob and gives the same digest', async () => {
    const ctx = await fx.context(DOCKERFILE(fx.base), { a: 'alpha\n' });

    const cold = await build(fx.opts(ctx, 'app/wd:1'));
    assert.deepEqual(cached(cold), [
      ['WORKDIR /app', false, true],
      ['COPY a /app/', false, true],
      ['WORKDIR /app', false, false],
      ['RUN cat a > b', false, true],
    ]);

    const from = fx.proxy.hits.length;
    const warm = await build(fx.opts(ctx, 'app/wd:2'));
    const hits = fx.proxy.hits.slice(from);
    assert.deepEqual(cached(warm), [
      ['WORKDIR /app', true, true],
      ['COPY a /app/', true, true],
      ['WORKDIR /app', true, false],
      ['RUN cat a > b', true, true],
    ]);
    assert.equal(warm.digest, cold.digest);
    const layers = await fx.manifestLayers('app/wd', '2');
    assert.equal(layers.length, 4, 'base + WORKDIR + COPY + RUN; the second WORKDIR adds none');
    const marker: string = sha256(NO_LAYER_BLOB);
    assert.ok(!layers.includes(marker), 'the "no layer" marker never enters the image');
    const gets = hits.filter((h) => h.method === 'GET' && [...layers, marker].some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(gets, [], 'the warm build downloads no layer blob');
  });
});
