/**
 * Config and history of metadata instructions, compared with what BuildKit writes (expected
 * strings derived from BuildKit's dockerfile2llb dispatch functions), plus timestamps,
 * reproducibility, ONBUILD and the up-front RUN refusal.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { build } from '../../src/build/index.js';
import type { ImageConfig } from '../../src/oci/types.js';
import { repoRoot } from '../../src/testing/paths.js';
import { tempDir } from '../../src/testing/tmp.js';
import { buildToLayout, skopeoConfig, unpackedTree, writeTree } from './support.js';

const testdata = join(repoRoot, 'test', 'e2e', 'testdata');
const hostArch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;

describe('metadata instructions', () => {
  it('give the config and history BuildKit writes (golden)', async () => {
    const dockerfile = await readFile(join(testdata, 'metadata.Dockerfile'), 'utf8');
    const b = await buildToLayout(dockerfile, {}, { reproducible: true, labels: { 'built.by': 'gantry-test' } });
    try {
      const got = await skopeoConfig(`oci:${b.layout}:latest`);
      const want = JSON.parse((await readFile(join(testdata, 'metadata.config.json'), 'utf8')).replace('HOST_ARCH', hostArch)) as ImageConfig;
      assert.equal(got.rootfs.diff_ids.length, 1, 'WORKDIR on scratch creates the directory: one layer');
      want.rootfs.diff_ids = got.rootfs.diff_ids;
      assert.deepEqual(got, want);
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('build args reach history, never the config Env', async () => {
    const df = 'ARG BASE=scratch\nARG SHARED=global\nFROM $BASE\nARG NAME\nARG SHARED\nARG UNSET\nENV N=$NAME\n';
    const b = await buildToLayout(df, {}, { buildArgs: { NAME: 'x' } });
    try {
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      assert.deepEqual(cfg.history!.map((h) => h.created_by), ['ARG NAME=x', 'ARG SHARED=global', 'ARG UNSET', 'ENV N=x']);
      assert.deepEqual(cfg.config?.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'N=x']);
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('empty exec forms are left out of the config, as Go omitempty does', async () => {
    const b = await buildToLayout('FROM scratch\nENTRYPOINT []\nCMD []\n', {});
    try {
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      assert.equal(cfg.config?.Entrypoint, undefined);
      assert.equal(cfg.config?.Cmd, undefined);
      assert.deepEqual(cfg.history!.map((h) => h.created_by), ['ENTRYPOINT []', 'CMD []']);
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('ENTRYPOINT after CMD in the same stage keeps CMD', async () => {
    const b = await buildToLayout('FROM scratch\nCMD ["a"]\nENTRYPOINT ["b"]\n', {});
    try {
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      assert.deepEqual(cfg.config?.Cmd, ['a']);
      assert.deepEqual(cfg.config?.Entrypoint, ['b']);
      assert.deepEqual(cfg.config?.WorkingDir, '/');
    } finally {
      await b.tmp.cleanup();
    }
  });
});

describe('timestamps', () => {
  it('--reproducible twice gives the same digest, with created at SOURCE_DATE_EPOCH', async () => {
    const files = { 'a.txt': 'A', 'd/b.txt': 'B' };
    const df = 'FROM scratch\nCOPY . /app/\nWORKDIR /data\nCOPY <<EOF /note\nnote\nEOF\n';
    const one = await buildToLayout(df, files, { reproducible: true, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    const two = await buildToLayout(df, files, { reproducible: true, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    try {
      assert.equal(one.result.digest, two.result.digest);
      const cfg = await skopeoConfig(`oci:${one.layout}:latest`);
      assert.equal(cfg.created, '2023-11-14T22:13:20Z');
      assert.ok(cfg.history!.every((h) => h.created === '2023-11-14T22:13:20Z'));
      const tree = await unpackedTree(one.layout);
      assert.ok(Object.values(tree).every((n) => n.type === 'symlink' || n.mtime! <= 1700000000));
    } finally {
      await one.tmp.cleanup();
      await two.tmp.cleanup();
    }
  });

  it('without --reproducible, created is the build time', async () => {
    const before = Date.now() - 2000;
    const b = await buildToLayout('FROM scratch\nENV A=1\n', {});
    try {
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      assert.ok(Date.parse(cfg.created!) >= before && Date.parse(cfg.created!) <= Date.now());
    } finally {
      await b.tmp.cleanup();
    }
  });
});

describe('RUN', () => {
  it('fails with its location and output when the image has no shell, and nothing is written', async () => {
    const tmp = await tempDir('e2e-run');
    try {
      await writeTree(join(tmp.path, 'ctx'), { Dockerfile: 'FROM scratch\nCOPY a /a\n\nRUN echo hi\n', a: 'a' });
      const out = join(tmp.path, 'out');
      await assert.rejects(
        build({ context: join(tmp.path, 'ctx'), ociLayoutPath: out, workDir: tmp.path, env: {} }),
        (err: Error & { code?: string }) => err.code === 'BUILD_FAILED' && /^Dockerfile:4: RUN echo hi: exit code 127\n.*\/bin\/sh/.test(err.message),
      );
      await assert.rejects(access(out));
    } finally {
      await tmp.cleanup();
    }
  });
});
