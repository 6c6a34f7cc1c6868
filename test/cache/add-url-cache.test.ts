/**
 * `ADD <url>` under the layer cache, keyed as BuildKit keys its HTTP source: with `--checksum` the
 * checksum names the content and a hit sends no request to the server; without one the file is
 * downloaded and keyed by its digest (and Last-Modified), so unchanged content hits and changed
 * content misses.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildResult } from '../../src/build/index.js';
import { startCacheFixture, type CacheFixture } from './support.js';

describe('ADD <url> in the layer cache', () => {
  let fx: CacheFixture;
  let server: Server;
  let origin: string;
  /** Served bodies by path; every request is recorded. */
  const files = new Map<string, string>();
  const requests: string[] = [];
  before(async () => {
    fx = await startCacheFixture();
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      const body = files.get(req.url ?? '');
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': 'Wed, 01 Jan 2025 00:00:00 GMT' }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await fx?.close();
  });

  let tag = 0;
  /** Builds `ctx`; returns whether the ADD was a hit, the requests the server saw, and the result. */
  async function addBuild(ctx: string, repo: string): Promise<{ cached: boolean; requests: string[]; result: BuildResult }> {
    const from = requests.length;
    const result = await build(fx.opts(ctx, `${repo}:${++tag}`));
    const add = result.steps.find((s) => s.instruction.startsWith('ADD'));
    assert.ok(add, 'the build has an ADD step');
    return { cached: add.cached, requests: requests.slice(from), result };
  }

  it('with --checksum a warm build hits without any request to the URL', async () => {
    const body = 'pinned content\n';
    files.set('/pinned.txt', body);
    const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const ctx = await fx.context(`FROM ${fx.base}\nADD --checksum=${sum} ${origin}/pinned.txt /pinned.txt\n`, {});

    const cold = await addBuild(ctx, 'add/pinned');
    assert.deepEqual([cold.cached, cold.requests], [false, ['/pinned.txt']]);
    const warm = await addBuild(ctx, 'add/pinned');
    assert.deepEqual([warm.cached, warm.requests], [true, []], 'a hit needs no download');
    assert.equal(warm.result.digest, cold.result.digest);
  });

  it('without a checksum it downloads, hits while the content is unchanged and misses when it changes', async () => {
    files.set('/plain.txt', 'version 1\n');
    const ctx = await fx.context(`FROM ${fx.base}\nADD ${origin}/plain.txt /plain.txt\n`, {});

    const cold = await addBuild(ctx, 'add/plain');
    assert.deepEqual([cold.cached, cold.requests], [false, ['/plain.txt']]);
    const warm = await addBuild(ctx, 'add/plain');
    assert.deepEqual([warm.cached, warm.requests], [true, ['/plain.txt']], 'one download to key the step, none to copy');
    assert.equal(warm.result.digest, cold.result.digest);

    files.set('/plain.txt', 'version 2\n');
    const changed = await addBuild(ctx, 'add/plain');
    assert.deepEqual([changed.cached, changed.requests], [false, ['/plain.txt']], 'a miss copies the file it downloaded to key the step');
    assert.notEqual(changed.result.digest, cold.result.digest);
    const again = await addBuild(ctx, 'add/plain');
    assert.equal(again.cached, true);
    assert.equal(again.result.digest, changed.result.digest);
  });

  it('an ADD of a URL and a context file misses when either changes', async () => {
    files.set('/mixed.txt', 'remote\n');
    const ctx = await fx.context(`FROM ${fx.base}\nADD ${origin}/mixed.txt local.txt /dir/\n`, { 'local.txt': 'local\n' });
    assert.equal((await addBuild(ctx, 'add/mixed')).cached, false);
    assert.equal((await addBuild(ctx, 'add/mixed')).cached, true);
    await writeFile(join(ctx, 'local.txt'), 'local, changed\n');
    assert.equal((await addBuild(ctx, 'add/mixed')).cached, false);
    files.set('/mixed.txt', 'remote, changed\n');
    assert.equal((await addBuild(ctx, 'add/mixed')).cached, false);
    assert.equal((await addBuild(ctx, 'add/mixed')).cached, true);
  });
});
