/**
 * Builds on a busybox base served by a real registry (distribution): base resolution, files
 * from the base (--chown names, WORKDIR), ONBUILD, pushes read back with skopeo, digest files,
 * BUILDER_OUTPUT, and the push-permission check that fails before building.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build } from '../../src/build/index.js';
import { copyImage } from '../../src/oci/copy.js';
import { MemoryStore } from '../../src/oci/memory.js';
import { randomIndex } from '../../src/oci/random.js';
import type { ImageConfig, ImageManifest } from '../../src/oci/types.js';
import { RegistryClient, RegistryImageWriter } from '../../src/registry/index.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { startRegistry, type TestRegistry, type TokenRegistry } from '../../src/testing/registry.js';
import { skopeoInspectRaw, skopeoPush } from '../../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { buildToLayout, shape, skopeoConfig, skopeoManifest, unpackedTree, writeTree } from './support.js';

describe('builds on a registry base image', () => {
  let reg: TestRegistry;
  let busybox: TestImage;
  let base: string;
  before(async () => {
    reg = await startRegistry({ kind: 'plain' });
    busybox = await makeBusyboxImage();
    await skopeoPush(busybox, reg, 'base/busybox:1');
    base = `${reg.host}/base/busybox:1`;
  });
  after(async () => {
    await busybox?.cleanup();
    await reg?.stop();
  });

  it('ENTRYPOINT resets the CMD inherited from the base; base history and layers are kept', async () => {
    const b = await buildToLayout(`FROM ${base}\nENTRYPOINT ["/bin/echo"]\nENV X=1\n`, {});
    try {
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      assert.equal(cfg.config?.Cmd, undefined);
      assert.deepEqual(cfg.config?.Entrypoint, ['/bin/echo']);
      assert.deepEqual(cfg.rootfs.diff_ids, busybox.diffIds);
      assert.deepEqual(cfg.history!.map((h) => h.created_by), ['busybox-static rootfs', 'ENTRYPOINT ["/bin/echo"]', 'ENV X=1']);
      assert.ok(cfg.config?.Env?.includes('X=1'));
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('WORKDIR of an existing directory adds no layer; --chown names come from the image', async () => {
    const df = `FROM ${base}\nWORKDIR /tmp\nCOPY --chown=daemon:users a.txt /home/\nUSER nobody\nWORKDIR /home/nobody/work\n`;
    const b = await buildToLayout(df, { 'a.txt': 'A' });
    try {
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      const hist = cfg.history!.slice(1).map((h) => [h.created_by, h.empty_layer ?? false]);
      assert.deepEqual(hist, [
        ['WORKDIR /tmp', true],
        ['COPY --chown=daemon:users a.txt /home/ # buildkit', false],
        ['USER nobody', true],
        ['WORKDIR /home/nobody/work', false],
      ]);
      assert.equal(cfg.rootfs.diff_ids.length, 3);
      const tree = await unpackedTree(b.layout);
      assert.deepEqual([tree['home/a.txt']!.uid, tree['home/a.txt']!.gid], [1, 100]);
      assert.deepEqual([tree['home/nobody/work']!.uid, tree['home/nobody/work']!.gid], [65534, 65534]);
      assert.equal(tree['tmp']!.mode, 0o1777, 'base directories keep their modes');
    } finally {
      await b.tmp.cleanup();
    }
    await assert.rejects(buildToLayout(`FROM ${base}\nCOPY --chown=ghost a.txt /\n`, { 'a.txt': 'A' }), /Dockerfile:2: unable to find user ghost/);
  });

  it('a Docker-typed base gives an OCI manifest whose base layers keep their digests', async () => {
    const docker = await makeBusyboxImage({ mediaTypes: 'docker' });
    try {
      await skopeoPush(docker, reg, 'base/busybox:docker');
      const b = await buildToLayout(`FROM ${reg.host}/base/busybox:docker\nCOPY a.txt /\n`, { 'a.txt': 'A' });
      try {
        const m = await skopeoManifest(`oci:${b.layout}:latest`);
        assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
        assert.equal(m.config.mediaType, 'application/vnd.oci.image.config.v1+json');
        assert.deepEqual(m.layers.map((l) => l.mediaType), ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip']);
        assert.equal(m.layers[0]!.digest, docker.layers[0]!.digest);
      } finally {
        await b.tmp.cleanup();
      }
    } finally {
      await docker.cleanup();
    }
  });

  it('--platform picks the base from an index and sets the image platform', async () => {
    const store = new MemoryStore();
    await randomIndex(store, [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm', variant: 'v7' }], {}, 'multi');
    const client = new RegistryClient({ env: {} });
    try {
      await copyImage(store, 'multi', new RegistryImageWriter({ reference: `${reg.host}/base/multi:1`, client }), { tags: ['1'] });
    } finally {
      await client.close();
    }
    for (const [platform, arch, variant] of [['linux/arm64', 'arm64', undefined], ['linux/arm/v7', 'arm', 'v7']] as const) {
      const b = await buildToLayout(`FROM ${reg.host}/base/multi:1\nLABEL p=${platform}\n`, {}, { platform });
      try {
        const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
        assert.equal(cfg.architecture, arch);
        assert.equal(cfg.variant, variant);
        assert.equal(cfg.history![0]!.created_by, 'random layer 0');
      } finally {
        await b.tmp.cleanup();
      }
    }
  });

  it('COPY --from an image reference', async () => {
    const b = await buildToLayout(`FROM scratch\nCOPY --from=${base} /etc/passwd /passwd\n`, {});
    try {
      assert.match(shape(await unpackedTree(b.layout))['passwd']!, /^file:root:x:0:0/);
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('pushes, re-using base blobs, and ONBUILD triggers run in the child only', async () => {
    const tmp = await tempDir('e2e-push');
    try {
      const ctx = join(tmp.path, 'ctx');
      await writeTree(ctx, {
        Dockerfile: `FROM ${base}\nCOPY --chown=daemon app.txt /app/\nONBUILD COPY trigger.txt /triggered\n`,
        'app.txt': 'app',
      });
      const files = { digestFile: join(tmp.path, 'digest'), imageNameWithDigestFile: join(tmp.path, 'names'), imageNameTagWithDigestFile: join(tmp.path, 'tags') };
      const out = join(tmp.path, 'builder-output');
      const parent = await build({
        context: ctx,
        destinations: [`${reg.host}/app/parent:v1`, `${reg.host}/app/parent:latest`],
        workDir: tmp.path,
        env: { BUILDER_OUTPUT: out },
        defaultOutputDir: false,
        ...files,
      });
      assert.deepEqual(parent.pushed.map((p) => p.digest), [parent.digest, parent.digest]);
      assert.deepEqual(parent.outputs, []);
      const manifest = JSON.parse((await skopeoInspectRaw(reg, 'app/parent:v1')).toString()) as ImageManifest;
      assert.equal(manifest.layers[0]!.digest, busybox.layers[0]!.digest, 'the base layer is pushed as it was, not recompressed');
      assert.equal(manifest.layers.length, 2);
      assert.equal(await readFile(files.digestFile, 'utf8'), parent.digest);
      assert.equal(await readFile(files.imageNameWithDigestFile, 'utf8'), `${reg.host}/app/parent@${parent.digest}\n`.repeat(2));
      assert.equal(await readFile(files.imageNameTagWithDigestFile, 'utf8'), `${reg.host}/app/parent:v1@${parent.digest}\n${reg.host}/app/parent:latest@${parent.digest}\n`);
      const lines = (await readFile(join(out, 'images'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { name: string; digest: string });
      assert.deepEqual(lines, [{ name: `${reg.host}/app/parent:v1`, digest: parent.digest }, { name: `${reg.host}/app/parent:latest`, digest: parent.digest }]);

      const child = await buildToLayout(`FROM ${reg.host}/app/parent:v1\nLABEL child=1\n`, { 'trigger.txt': 'T' });
      try {
        const c: ImageConfig = await skopeoConfig(`oci:${child.layout}:latest`);
        assert.equal(c.config?.OnBuild, undefined);
        assert.deepEqual(c.history!.slice(1).map((h) => h.created_by), ['COPY --chown=daemon app.txt /app/ # buildkit', 'COPY trigger.txt /triggered # buildkit', 'LABEL child=1']);
        const tree = await unpackedTree(child.layout);
        assert.equal(shape(tree)['triggered'], 'file:T');
        assert.deepEqual([tree['app/app.txt']!.uid, tree['app/app.txt']!.gid], [1, 1]);
      } finally {
        await child.tmp.cleanup();
      }
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('push permission', () => {
  let reg: TokenRegistry;
  let tmp: TempDir;
  before(async () => {
    reg = await startRegistry({
      kind: 'token',
      users: { reader: 'reader-pw' },
      access: { reader: [{ repo: '*', actions: ['pull'] }] },
    });
    tmp = await tempDir('e2e-perm');
  });
  after(async () => {
    await reg?.stop();
    await tmp?.cleanup();
  });

  it('is checked for every destination before building', async () => {
    const ctx = join(tmp.path, 'ctx');
    await writeTree(ctx, { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a' });
    const configDir = join(tmp.path, 'docker');
    await writeTree(configDir, {
      'config.json': JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('reader:reader-pw').toString('base64') } } }),
    });
    const out = join(tmp.path, 'out');
    await assert.rejects(
      build({
        context: ctx,
        destinations: [`${reg.host}/team/app:1`],
        ociLayoutPath: out,
        workDir: tmp.path,
        env: {},
        registry: { dockerConfigDir: configDir, caFiles: reg.caFile ? { [reg.host]: [reg.caFile] } : {} },
      }),
      (err: Error & { code?: string }) => /checking push permission/.test(err.message) && (err.code === 'DENIED' || err.code === 'UNAUTHORIZED'),
    );
    await assert.rejects(access(out), 'nothing was built or written');
  });
});
