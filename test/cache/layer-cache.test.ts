/**
 * The layer cache in real builds: a busybox base on a real registry behind a counting fault
 * proxy, COPY + RUN built twice. The warm build hits every step, downloads no layer blob and
 * pushes the same manifest; changed inputs miss from the step they reach on; a broken or
 * disabled cache write never fails the build; `gantry build --cache-to/--cache-from type=local`.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { build, type BuildOptions, type BuildResult } from '../../src/build/index.js';
import { main, type CliIO } from '../../src/cli/main.js';
import { startCacheFixture, type CacheFixture } from './support.js';
import type { FaultProxy } from '../../src/testing/fault-proxy.js';

const DOCKERFILE = (base: string) => `FROM ${base}\nARG FLAVOUR=plain\nCOPY app.txt /app/app.txt\nCOPY other.txt /app/other.txt\nRUN cat /app/app.txt /app/other.txt > /app/both.txt && echo "$FLAVOUR" > /app/flavour\n`;

describe('layer cache', () => {
  let fx: CacheFixture;
  before(async () => {
    fx = await startCacheFixture();
  });
  after(async () => {
    await fx?.close();
  });

  const context = (files: Record<string, string>) => fx.context(DOCKERFILE(fx.base), files);
  const opts = (ctx: string, dest: string, extra: Partial<BuildOptions> = {}) => fx.opts(ctx, dest, extra);

  const cachedFlags = (r: BuildResult) => r.steps.filter((s) => /^(COPY|RUN)/.test(s.instruction)).map((s) => s.cached);

  async function timed(o: BuildOptions): Promise<{ result: BuildResult; ms: number; hits: FaultProxy['hits'] }> {
    const from = fx.proxy.hits.length;
    const t = performance.now();
    const result = await build(o);
    return { result, ms: performance.now() - t, hits: fx.proxy.hits.slice(from) };
  }

  async function tags(repo: string): Promise<string[]> {
    const res = await fetch(`${fx.reg.url}/v2/${repo}/tags/list`);
    if (res.status === 404) return [];
    return ((await res.json()) as { tags: string[] | null }).tags ?? [];
  }

  it('a warm rebuild hits every step, downloads no layer blob and pushes the same manifest', async (t: TestContext) => {
    const ctx = await context({ 'app.txt': 'one\n', 'other.txt': 'other\n' });
    const cold = await timed(opts(ctx, 'app/warm:1'));
    assert.deepEqual(cachedFlags(cold.result), [false, false, false]);
    assert.equal((await tags('app/warm/cache')).length, 3, 'the default cache repo is <dest repo>/cache, one entry per step');

    const warm = await timed(opts(ctx, 'app/warm:2'));
    assert.deepEqual(cachedFlags(warm.result), [true, true, true]);
    assert.equal(warm.result.digest, cold.result.digest);
    const res = await fetch(`${fx.reg.url}/v2/app/warm/manifests/2`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const layers = ((await res.json()) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest);
    assert.equal(layers.length, 4);
    const layerGets = warm.hits.filter((h) => h.method === 'GET' && layers.some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(layerGets, [], 'the warm build downloads no layer blob');
    t.diagnostic(`cold build ${cold.ms.toFixed(0)} ms, warm build ${warm.ms.toFixed(0)} ms`);
  });

  it('a one-line change in a copied file misses from that step on; a build arg the RUN sees misses it', async () => {
    const ctx = await context({ 'app.txt': 'one\n', 'other.txt': 'other\n' });
    await build(opts(ctx, 'app/change:1'));
    await writeFile(join(ctx, 'other.txt'), 'other, changed\n');
    const changed = await build(opts(ctx, 'app/change:1'));
    assert.deepEqual(cachedFlags(changed), [true, false, false]);
    const arg = await build(opts(ctx, 'app/change:1', { buildArgs: { FLAVOUR: 'spicy' } }));
    assert.deepEqual(cachedFlags(arg), [true, true, false]);
  });

  it('--no-push-cache reads but writes nothing to the cache repo', async () => {
    const ctx = await context({ 'app.txt': 'nopush\n', 'other.txt': 'x\n' });
    const from = fx.proxy.hits.length;
    const r = await build(opts(ctx, 'app/nopush:1', { cache: { enabled: true, copyLayers: true, noPush: true } }));
    assert.deepEqual(cachedFlags(r), [false, false, false]);
    assert.deepEqual(await tags('app/nopush/cache'), []);
    assert.equal(fx.proxy.hits.slice(from).filter((h) => h.method !== 'GET' && h.method !== 'HEAD' && h.path.includes('/cache/')).length, 0);
  });

  it('a cache registry that fails writes (500 on PUT) only warns', async () => {
    const ctx = await context({ 'app.txt': 'broken\n', 'other.txt': 'y\n' });
    fx.proxy.rules.push({ match: { method: 'PUT', path: /\/v2\/app\/broken\/cache\// }, times: Infinity, action: { kind: 'status', status: 500 } });
    const warnings: string[] = [];
    const logger = { log: (level: string, msg: string) => void (level === 'warn' && warnings.push(msg)) };
    try {
      const r = await build(opts(ctx, 'app/broken:1', { logger: logger as unknown as BuildOptions['logger'] }));
      assert.equal(r.pushed.length, 1);
      assert.ok(warnings.some((w) => /cache/.test(w)), warnings.join('\n'));
    } finally {
      fx.proxy.rules.length = 0;
    }
  });

  it('gantry build --cache-to type=local,dest=… then --cache-from type=local,src=… hits', async () => {
    const ctx = await context({ 'app.txt': 'local\n', 'other.txt': 'z\n' });
    const cacheDir = await fx.scratch('gantry-local-cache-');
    const run = async (flag: string) => {
      const out = await fx.scratch('gantry-local-out-');
      const io: CliIO & { err: string } = { err: '', env: { ...process.env }, stdout: () => undefined, stderr: (t) => void (io.err += t) };
      const code = await main(['build', '--reproducible', flag, '--output', `type=oci,dest=${out}`, ctx], io);
      assert.equal(code, 0, io.err);
      return io.err;
    };
    const first = await run(`--cache-to=type=local,dest=${cacheDir}`);
    assert.match(first, /0 hits, 3 layers stored/);
    const second = await run(`--cache-from=type=local,src=${cacheDir}`);
    assert.match(second, /3 hits/);
  });
});
