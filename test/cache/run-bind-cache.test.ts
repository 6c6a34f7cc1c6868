/**
 * `RUN --mount=type=bind` under the layer cache: the step is keyed by what the mount exposes
 * (context files under its source after .dockerignore, a stage's final key, an image's manifest
 * digest), so an unchanged source hits without running the command, and a changed one misses.
 * Each RUN appends a line to a cache mount: its length says how often the command really ran.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildResult } from '../../src/build/index.js';
import { cacheDirName } from '../../src/build/run-mounts.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { skopeoPush } from '../../src/testing/skopeo.js';
import { startCacheFixture, writeTree, type CacheFixture } from './support.js';

/** A cache mount at /runs whose id is the test's repo, so every test counts its own runs. */
const count = (id: string) => `--mount=type=cache,id=${id},target=/runs`;

describe('RUN with bind mounts in the layer cache', () => {
  let fx: CacheFixture;
  let runCache: string;
  const extra: TestImage[] = [];
  before(async () => {
    fx = await startCacheFixture();
    runCache = await fx.scratch('gantry-run-cache-');
  });
  after(async () => {
    for (const img of extra) await img.cleanup();
    await fx?.close();
  });

  let tag = 0;
  /** Builds `ctx`; returns whether the RUN step was a hit and how many times the RUN has run so far. */
  async function runBuild(ctx: string, repo: string): Promise<{ cached: boolean; runs: number; result: BuildResult }> {
    const result = await build(fx.opts(ctx, `${repo}:${++tag}`, { cacheDir: runCache }));
    const run = result.steps.find((s) => s.instruction.startsWith('RUN'));
    assert.ok(run, 'the build has a RUN step');
    const log = await readFile(join(runCache, cacheDirName(repo), 'count'), 'utf8').catch(() => '');
    return { cached: run.cached, runs: log.split('\n').filter(Boolean).length, result };
  }

  // A change outside the bind source (and outside any COPY) must hit; inside it must miss.
  const contextCases = [
    { name: 'read-only bind of a context directory', repo: 'bind/ro', mount: 'type=bind,source=src,target=/mnt/src', write: '' },
    { name: 'rw bind (its writes are thrown away)', repo: 'bind/rw', mount: 'type=bind,source=src,target=/mnt/src,rw', write: ' && echo scribble > /mnt/src/a.txt' },
    { name: 'bind of one context file', repo: 'bind/file', mount: 'type=bind,source=src/a.txt,target=/mnt/src/a.txt', write: '' },
  ];
  for (const c of contextCases) {
    it(`${c.name}: unchanged source hits without running, a change outside it hits, a change under it misses`, async (t) => {
      const df = `FROM ${fx.base}\nCOPY app.txt /app.txt\nRUN --mount=${c.mount} ${count(c.repo)} cat /mnt/src/a.txt > /out.txt${c.write} && echo ran >> /runs/count\n`;
      const ctx = await fx.context(df, { 'app.txt': 'app\n', 'other.txt': 'other\n' });
      await writeTree(ctx, { 'src/a.txt': 'one\n', 'src/b.txt': 'b\n' });

      const cold = await runBuild(ctx, c.repo);
      assert.deepEqual([cold.cached, cold.runs], [false, 1]);
      const started = performance.now();
      const warm = await runBuild(ctx, c.repo);
      t.diagnostic(`warm build ${(performance.now() - started).toFixed(0)} ms, RUN step ${warm.result.steps.find((s) => s.instruction.startsWith('RUN'))?.ms} ms`);
      assert.deepEqual([warm.cached, warm.runs], [true, 1], 'unchanged context: hit, the command does not run');
      assert.equal(warm.result.digest, cold.result.digest);

      await writeFile(join(ctx, 'other.txt'), 'other, changed\n');
      const outside = await runBuild(ctx, c.repo);
      assert.deepEqual([outside.cached, outside.runs], [true, 1], 'a file outside the bind source does not matter');

      await writeFile(join(ctx, 'src/a.txt'), 'two\n');
      const changed = await runBuild(ctx, c.repo);
      assert.deepEqual([changed.cached, changed.runs], [false, 2], 'a changed file under the source misses');
      assert.notEqual(changed.result.digest, cold.result.digest);
    });
  }

  it('a bind of the whole context ignores what .dockerignore excludes and misses on anything else', async () => {
    const df = `FROM ${fx.base}\nRUN --mount=type=bind,target=/ctx ${count('bind/all')} ls /ctx > /ls.txt && echo ran >> /runs/count\n`;
    const ctx = await fx.context(df, { 'keep.txt': 'k\n', 'ignored.txt': 'i\n', '.dockerignore': 'ignored.txt\n' });
    assert.equal((await runBuild(ctx, 'bind/all')).runs, 1);
    await writeFile(join(ctx, 'ignored.txt'), 'i, changed\n');
    const ignored = await runBuild(ctx, 'bind/all');
    assert.deepEqual([ignored.cached, ignored.runs], [true, 1]);
    await writeFile(join(ctx, 'keep.txt'), 'k, changed\n');
    const kept = await runBuild(ctx, 'bind/all');
    assert.deepEqual([kept.cached, kept.runs], [false, 2]);
  });

  it('a bind from a stage is keyed by that stage: hit while its inputs are unchanged, miss when they change', async () => {
    const df =
      `FROM ${fx.base} AS data\nCOPY src /data\n` +
      `FROM ${fx.base}\nRUN --mount=type=bind,from=data,source=/data,target=/d ${count('bind/stage')} cat /d/a.txt > /out.txt && echo ran >> /runs/count\n`;
    const ctx = await fx.context(df, { 'other.txt': 'other\n' });
    await writeTree(ctx, { 'src/a.txt': 'one\n' });
    assert.equal((await runBuild(ctx, 'bind/stage')).runs, 1);
    const warm = await runBuild(ctx, 'bind/stage');
    assert.deepEqual([warm.cached, warm.runs], [true, 1]);
    await writeFile(join(ctx, 'other.txt'), 'changed\n');
    const outside = await runBuild(ctx, 'bind/stage');
    assert.deepEqual([outside.cached, outside.runs], [true, 1]);
    await writeFile(join(ctx, 'src/a.txt'), 'two\n');
    const changed = await runBuild(ctx, 'bind/stage');
    assert.deepEqual([changed.cached, changed.runs], [false, 2]);
  });

  it('a bind from an image is keyed by its manifest digest: a hit reads none of its layers, a moved tag misses', async () => {
    const ref = `${fx.proxy.host}/base/mounted:1`;
    const first = await makeBusyboxImage();
    extra.push(first);
    await skopeoPush(first, fx.reg, 'base/mounted:1');
    const df = `FROM ${fx.base}\nRUN --mount=type=bind,from=${ref},source=/bin,target=/b ${count('bind/image')} ls /b > /ls.txt && echo ran >> /runs/count\n`;
    const ctx = await fx.context(df, {});
    assert.equal((await runBuild(ctx, 'bind/image')).runs, 1);
    const from = fx.proxy.hits.length;
    const warm = await runBuild(ctx, 'bind/image');
    assert.deepEqual([warm.cached, warm.runs], [true, 1]);
    const layerGets = fx.proxy.hits.slice(from).filter((h) => h.method === 'GET' && first.layers.some((l) => h.path.endsWith(`/blobs/${l.digest}`)));
    assert.deepEqual(layerGets, [], 'the mounted image is resolved (manifest and config), its layers are not read');

    // Same files, other manifest (Docker media types): the tag now names another digest.
    const moved = await makeBusyboxImage({ mediaTypes: 'docker' });
    extra.push(moved);
    await skopeoPush(moved, fx.reg, 'base/mounted:1');
    const movedRun = await runBuild(ctx, 'bind/image');
    assert.deepEqual([movedRun.cached, movedRun.runs], [false, 2]);
  });
});
