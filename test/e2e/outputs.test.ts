/**
 * Where a build's image goes: docker-archive tagged with every destination, the default OCI
 * layout when nothing else is asked, and pushes retried as a whole (--push-retry).
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build } from '../../src/build/index.js';
import { startFaultProxy, type FaultProxy } from '../../src/testing/fault-proxy.js';
import { run } from '../../src/testing/exec.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoInspectRaw } from '../../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { skopeoConfig, writeTree } from './support.js';

describe('local outputs', () => {
  let tmp: TempDir;
  let ctx: string;
  before(async () => {
    tmp = await tempDir('e2e-outputs');
    ctx = join(tmp.path, 'ctx');
    await writeTree(ctx, { Dockerfile: 'FROM scratch\nCOPY a /a\nLABEL v=1\n', a: 'a' });
  });
  after(() => tmp.cleanup());

  it('--no-push with --tar-path writes a docker-archive tagged with every destination, and the digest file', async () => {
    const tar = join(tmp.path, 'image.tar');
    const digestFile = join(tmp.path, 'digest');
    const r = await build({
      context: ctx,
      destinations: ['registry.example/team/app:1.0', 'registry.example/team/app:latest'],
      noPush: true,
      tarPath: tar,
      digestFile,
      workDir: tmp.path,
      env: {},
    });
    assert.deepEqual(r.pushed, []);
    assert.deepEqual(r.outputs, [{ kind: 'docker-archive', path: tar }]);
    assert.equal(await readFile(digestFile, 'utf8'), r.digest);
    for (const ref of ['registry.example/team/app:1.0', 'registry.example/team/app:latest']) {
      const cfg = await skopeoConfig(`docker-archive:${tar}:${ref}`);
      assert.deepEqual(cfg.config?.Labels, { v: '1' });
    }
    const loaded = await run('tar', ['-xOf', tar, 'manifest.json'], { check: true });
    assert.deepEqual((JSON.parse(loaded.stdout) as Array<{ RepoTags: string[] }>)[0]!.RepoTags, ['registry.example/team/app:1.0', 'registry.example/team/app:latest']);
  });

  it('logs one line per step with its time, and where the image went', async () => {
    const lines: string[] = [];
    const logger = { log: (_level: string, message: string) => void lines.push(message) };
    const out = join(tmp.path, 'logged');
    await build({ context: ctx, workDir: tmp.path, env: {}, ociLayoutPath: out, logger });
    assert.match(lines[0]!, /^\[1\/2\] COPY a \/a  \d+\.\d\ds$/);
    assert.match(lines[1]!, /^\[2\/2\] LABEL v=1  \d+\.\d\ds$/);
    assert.ok(lines.some((l) => l.startsWith('built image sha256:')));
    assert.ok(lines.includes(`wrote OCI layout ${out}`));
  });

  it('writes an OCI layout when nothing is pushed and no output is given', async () => {
    const dir = join(tmp.path, 'default-out');
    const r = await build({ context: ctx, workDir: tmp.path, env: {}, defaultOutputDir: dir });
    assert.deepEqual(r.outputs, [{ kind: 'oci-layout', path: dir }]);
    const cfg = await skopeoConfig(`oci:${dir}:latest`);
    assert.equal(cfg.rootfs.diff_ids.length, 1);
    const none = join(tmp.path, 'none');
    const r2 = await build({ context: ctx, workDir: tmp.path, env: {}, defaultOutputDir: false, noPush: true });
    assert.deepEqual(r2.outputs, []);
    await assert.rejects(access(none));
  });
});

describe('--push-retry', () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let tmp: TempDir;
  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
    proxy = await startFaultProxy(reg);
    tmp = await tempDir('e2e-retry');
    await writeTree(join(tmp.path, 'ctx'), { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a' });
  });
  after(async () => {
    await proxy?.stop();
    await reg?.stop();
    await tmp?.cleanup();
  });

  const opts = () => ({
    context: join(tmp.path, 'ctx'),
    workDir: tmp.path,
    env: {},
    defaultOutputDir: false as const,
    skipPushPermissionCheck: true,
    pushBackoffMs: 10,
    registry: { retries: 0 },
  });

  it('retries the whole push after a failure and succeeds', async () => {
    proxy.rules.push({ match: { method: 'PUT', path: /\/manifests\// }, times: 1, action: { kind: 'status', status: 400, body: '{"errors":[{"code":"MANIFEST_INVALID","message":"injected"}]}' } });
    const r = await build({ ...opts(), destinations: [`${proxy.host}/retry/app:1`], pushRetry: 2 });
    assert.equal(r.pushed.length, 1);
    const raw = await skopeoInspectRaw(reg, 'retry/app:1');
    assert.ok(raw.length > 0);
    // One injected failure, then the whole push again (how many manifest PUTs a push makes —
    // by digest and/or by tag — is the registry client's business).
    const puts = proxy.hits.filter((h) => h.method === 'PUT' && h.path.includes('/manifests/'));
    assert.equal(puts.filter((h) => h.rule !== undefined).length, 1);
    assert.ok(puts.filter((h) => h.rule === undefined).length >= 1);
  });

  it('gives up after pushRetry retries', async () => {
    proxy.rules.push({ match: { method: 'PUT', path: /\/manifests\// }, times: Infinity, action: { kind: 'status', status: 400, body: '{"errors":[{"code":"MANIFEST_INVALID","message":"injected"}]}' } });
    await assert.rejects(build({ ...opts(), destinations: [`${proxy.host}/retry/app:2`], pushRetry: 1 }), /pushing .*retry\/app:2/);
  });
});
