/**
 * The context hash index in real builds: COPY/ADD keys need the digest of every copied context
 * file, and the index (one file per context directory under $XDG_CACHE_HOME/gantry/context-index)
 * lets an unchanged file be trusted from its stat identity instead of being read again. A changed
 * file, even one rewritten with its old size and mtime, is read and makes its COPY miss.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { build, type BuildResult } from '../../src/build/index.js';
import { ContextIndexes, copiedFilesDigest, defaultContextIndexDir } from '../../src/build/cache.js';
import type { BuildCache } from '../../src/build/cache.js';
import { ContextHashIndex, RACY_MARGIN_MS, type ContextDigestStats } from '../../src/cache/index.js';
import { main } from '../../src/cli/main.js';
import type { Logger } from '../../src/util/logger.js';
import { startCacheFixture, type CacheFixture } from './support.js';

const DOCKERFILE = (base: string) => `FROM ${base}\nWORKDIR /app\nCOPY package.json /app/\nCOPY . /app/\n`;
const SOURCES = 40;

/** A logger keeping the stats of every context digest a build reports (at debug level). */
function digestLog(): { logger: Logger; digests: ContextDigestStats[] } {
  const digests: ContextDigestStats[] = [];
  return {
    digests,
    logger: {
      log(_level, _message, fields) {
        if (typeof fields?.['hashed'] === 'number') digests.push(fields as unknown as ContextDigestStats);
      },
    },
  };
}

const counts = (d: ContextDigestStats[]) => d.map((s) => ({ hashed: s.hashed, reused: s.reused }));
const cached = (r: BuildResult) => r.steps.map((s) => [s.instruction, s.cached] as const);

describe('context hash index in builds', () => {
  let fx: CacheFixture;
  let xdg: string;
  const savedXdg = process.env.XDG_CACHE_HOME;
  before(async () => {
    fx = await startCacheFixture();
    xdg = await fx.scratch('gantry-xdg-');
    // The build cache finds its index directory from the environment, as the CLI's does.
    process.env.XDG_CACHE_HOME = xdg;
  });
  after(async () => {
    if (savedXdg === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = savedXdg;
    await fx?.close();
  });

  it('a no-change rebuild reads no context file; a file rewritten with its old size and mtime is read and misses', async () => {
    const ctx = await fx.context(DOCKERFILE(fx.base), { 'package.json': '{"name":"app"}\n', '.dockerignore': '*.log\n', 'debug.log': 'ignored\n' });
    for (let i = 0; i < SOURCES; i++) {
      await mkdir(join(ctx, 'src', `m${i % 4}`), { recursive: true });
      await writeFile(join(ctx, 'src', `m${i % 4}`, `f${i}.js`), `export const v${i} = ${i};\n`);
    }
    const target = join(ctx, 'src', 'm1', 'f5.js');
    const mtime = new Date(1_700_000_000_000);
    await utimes(target, mtime, mtime);
    // Files changed within the racy margin of being hashed are not trusted next time.
    await sleep(RACY_MARGIN_MS + 50);
    // Dockerfile, .dockerignore, package.json and the sources; debug.log is ignored.
    const copied = 3 + SOURCES;

    const cold = digestLog();
    const first = await build({ ...fx.opts(ctx, 'app/idx:1'), logger: cold.logger });
    assert.deepEqual(cached(first).slice(-2), [['COPY package.json /app/', false], ['COPY . /app/', false]]);
    assert.deepEqual(counts(cold.digests), [
      { hashed: 1, reused: 0 },
      { hashed: copied - 1, reused: 1 },
    ], 'the second COPY reuses what the first one read: one index per build');
    const indexFile = ContextHashIndex.fileFor(defaultContextIndexDir(process.env), ctx);
    assert.ok((await stat(indexFile)).isFile(), 'the index is saved under $XDG_CACHE_HOME/gantry/context-index');

    const warm = digestLog();
    const second = await build({ ...fx.opts(ctx, 'app/idx:2'), logger: warm.logger });
    assert.ok(second.steps.every((s) => s.cached));
    assert.equal(second.digest, first.digest);
    assert.deepEqual(counts(warm.digests), [
      { hashed: 0, reused: 1 },
      { hashed: 0, reused: copied },
    ]);

    await writeFile(target, 'export const v5 = 9;\n');
    await utimes(target, mtime, mtime);
    const changed = digestLog();
    const third = await build({ ...fx.opts(ctx, 'app/idx:3'), logger: changed.logger });
    assert.deepEqual(cached(third).slice(-2), [['COPY package.json /app/', true], ['COPY . /app/', false]]);
    assert.deepEqual(counts(changed.digests), [
      { hashed: 0, reused: 1 },
      { hashed: 1, reused: copied - 1 },
    ]);
    assert.notEqual(third.digest, first.digest);

    let out = '';
    const code = await main(['prune', '--context-index-dir', join(xdg, 'gantry', 'context-index'), '--run-cache-dir', join(xdg, 'none'), '--layer-store', join(xdg, 'none')], {
      stdout: (t) => void (out += t),
      stderr: () => undefined,
      env: { HOME: '/nonexistent' },
    });
    assert.equal(code, 0);
    assert.match(out, /removed context-index context-[0-9a-f]{32}\.json/);
    assert.deepEqual(await readdir(join(xdg, 'gantry', 'context-index')), []);
  });

  it('a context materialised for one build (git, tarball) leaves no index behind', async () => {
    const ctx = await fx.context('FROM scratch\n', { a: 'alpha\n' });
    const dir = await fx.scratch('gantry-index-');
    const cache = { contextIndexes: new ContextIndexes(dir, { log() {} }) } as unknown as BuildCache;
    const tree = { dir: ctx, resetOwners: true, name: 'build context' };
    const kept = await copiedFilesDigest(tree, ['a'], undefined, undefined, cache);
    assert.equal((await readdir(dir)).length, 1);
    const other = await fx.context('FROM scratch\n', { a: 'alpha\n' });
    const temp = await copiedFilesDigest({ ...tree, dir: other, temporary: true }, ['a'], undefined, undefined, cache);
    assert.equal(temp, kept, 'same files, same digest');
    assert.equal((await readdir(dir)).length, 1, 'no index file for the temporary tree');
  });
});
