/**
 * Pushes overlap the build: each new layer of the image starts uploading to the destinations as
 * soon as it is written, while later steps run; the manifest still goes last. Seen through a fault
 * proxy in front of a real registry: what was uploaded, when, and what a failed upload does.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build } from '../../src/build/index.js';
import type { ImageManifest } from '../../src/oci/types.js';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../../src/testing/fault-proxy.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoInspectRaw, skopeoPush } from '../../src/testing/skopeo.js';
import { tempDir } from '../../src/testing/tmp.js';
import type { Logger } from '../../src/util/logger.js';
import { writeTree } from './support.js';

/** Digests whose upload to `repo` completed (the final PUT of an upload session names the digest). */
function uploadedBlobs(proxy: FaultProxy, repo: string, from = 0): string[] {
  return proxy.hits.slice(from).flatMap((h) => {
    const m = new RegExp(`^/v2/${repo}/blobs/uploads/[^?]*\\?(?:.*&)?digest=(sha256%3A|sha256:)([a-f0-9]{64})`).exec(h.path);
    return h.method === 'PUT' && h.rule === undefined && m ? [`sha256:${m[2]}`] : [];
  });
}

const manifestPuts = (proxy: FaultProxy, repo: string) => proxy.hits.filter((h) => h.method === 'PUT' && h.path.startsWith(`/v2/${repo}/manifests/`));

describe('pushes overlapping the build', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let busybox: TestImage;
  let base: string;
  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
    proxy = await startFaultProxy(reg);
    busybox = await makeBusyboxImage();
    await skopeoPush(busybox, reg, 'base/busybox:1');
    base = `${proxy.host}/base/busybox:1`;
  });
  after(async () => {
    await busybox?.cleanup();
    await proxy?.stop();
    await reg?.stop();
  });

  async function buildWith(dockerfile: string, files: Record<string, string>, tag: string, rules: FaultRule[] = [], extra: Partial<Parameters<typeof build>[0]> = {}, onStart?: (ctx: string) => void) {
    const tmp = await tempDir('push-overlap');
    const ctx = join(tmp.path, 'ctx');
    proxy.rules.splice(0, proxy.rules.length, ...rules);
    const hitsBefore = proxy.hits.length;
    try {
      await writeTree(ctx, { Dockerfile: dockerfile, ...files });
      onStart?.(ctx);
      const result = await build({ context: ctx, destinations: [`${proxy.host}/${tag}`], workDir: tmp.path, env: {}, defaultOutputDir: false, ...extra }).then(
        (r) => ({ ok: true as const, r }),
        (err: unknown) => ({ ok: false as const, err: err as Error }),
      );
      return { result, hitsBefore };
    } finally {
      proxy.rules.splice(0, proxy.rules.length);
      await tmp.cleanup();
    }
  }

  it('uploads a new layer while a later RUN is still running, and pushes the manifest after it', async () => {
    // The RUN waits (bounded) for a file that the test writes only once the COPY layer's upload
    // has completed: the build can only succeed if that upload happened during the RUN.
    let watcher: NodeJS.Timeout | undefined;
    let seenAt = -1;
    const df = `FROM ${base}\nCOPY a.txt /a.txt\nRUN --mount=type=bind,target=/ctx i=0; while [ ! -e /ctx/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; test -e /ctx/go\n`;
    const { result, hitsBefore } = await buildWith(df, { 'a.txt': 'overlap\n' }, 'app/overlap:1', [], {}, (ctx) => {
      const from = proxy.hits.length;
      watcher = setInterval(() => {
        if (seenAt >= 0 || uploadedBlobs(proxy, 'app/overlap', from).length === 0) return;
        seenAt = proxy.hits.length;
        void writeFile(join(ctx, 'go'), '');
      }, 10);
    });
    clearInterval(watcher);
    if (!result.ok) throw result.err;
    assert.ok(seenAt >= 0, 'a layer was uploaded before the build finished');
    const manifest = JSON.parse((await skopeoInspectRaw(reg, 'app/overlap:1')).toString()) as ImageManifest;
    const uploaded = uploadedBlobs(proxy, 'app/overlap', hitsBefore);
    assert.equal(uploaded[0], manifest.layers[1]!.digest, 'the first upload is the COPY layer');
    const lastBlob = proxy.hits.findLastIndex((h, i) => i >= hitsBefore && h.method === 'PUT' && h.path.includes('/blobs/uploads/'));
    const firstManifest = proxy.hits.findIndex((h, i) => i >= hitsBefore && h.method === 'PUT' && h.path.includes('/manifests/'));
    assert.ok(firstManifest > lastBlob, 'the manifest is pushed after every blob');
    assert.deepEqual(new Set(uploaded), new Set([manifest.layers[1]!.digest, manifest.layers[2]!.digest, manifest.config.digest]), 'each new blob is uploaded once');
  });

  it('uploads only the layers of the image, not those of other stages', async () => {
    const df = `FROM ${base} AS builder\nCOPY b.txt /b.txt\nRUN echo built > /built\nFROM ${base}\nCOPY --from=builder /built /c.txt\n`;
    const { result, hitsBefore } = await buildWith(df, { 'b.txt': 'builder only\n' }, 'app/stages:1');
    if (!result.ok) throw result.err;
    const manifest = JSON.parse((await skopeoInspectRaw(reg, 'app/stages:1')).toString()) as ImageManifest;
    assert.deepEqual(new Set(uploadedBlobs(proxy, 'app/stages', hitsBefore)), new Set([manifest.layers[1]!.digest, manifest.config.digest]));
  });

  it('a failed early upload fails the build naming the registry, and no manifest is pushed', async () => {
    const rules: FaultRule[] = [{ match: { method: 'POST', path: /^\/v2\/app\/failing\/blobs\/uploads\/$/ }, times: Infinity, action: { kind: 'status', status: 400, body: '{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"injected"}]}' } }];
    const { result } = await buildWith(`FROM ${base}\nCOPY a.txt /a.txt\n`, { 'a.txt': 'fails\n' }, 'app/failing:1', rules, { pushRetry: 0, skipPushPermissionCheck: true });
    assert.equal(result.ok, false);
    const msg = result.ok ? '' : result.err.message;
    assert.match(msg, new RegExp(`pushing ${proxy.host}/app/failing:1`));
    assert.match(msg, new RegExp(`uploading layer sha256:[a-f0-9]{64} to ${proxy.host}/app/failing`));
    assert.equal(manifestPuts(proxy, 'app/failing').length, 0);
  });

  it('a step failing after a layer was written fails with its own error and pushes no manifest', async () => {
    const { result } = await buildWith(`FROM ${base}\nCOPY a.txt /a.txt\nRUN exit 3\n`, { 'a.txt': 'cancelled\n' }, 'app/cancelled:1');
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.err.message, /RUN exit 3: exit code 3/);
    assert.equal(manifestPuts(proxy, 'app/cancelled').length, 0);
  });

  it('a failed early upload is retried with --push-retry like any push', async () => {
    const warnings: string[] = [];
    const logger: Logger = { log: (level, message) => void (level === 'warn' && warnings.push(message)) };
    const rules: FaultRule[] = [{ match: { method: 'POST', path: /^\/v2\/app\/retried\/blobs\/uploads\/$/ }, times: 1, action: { kind: 'status', status: 400, body: '{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"injected"}]}' } }];
    const { result } = await buildWith(`FROM ${base}\nCOPY a.txt /a.txt\n`, { 'a.txt': 'retried\n' }, 'app/retried:1', rules, { pushRetry: 1, pushBackoffMs: 10, logger, skipPushPermissionCheck: true });
    if (!result.ok) throw result.err;
    assert.equal(result.r.pushed.length, 1);
    assert.ok(warnings.some((w) => w.includes(`pushing ${proxy.host}/app/retried:1 failed`) && w.includes('retrying')), warnings.join('\n'));
    assert.equal(manifestPuts(proxy, 'app/retried').length, 1);
  });
});
