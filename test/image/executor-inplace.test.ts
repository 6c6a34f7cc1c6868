/**
 * RUN in an unprivileged pod, the way Kaniko recipes build: the executor image in a simulated pod
 * (Docker's default capabilities, no CAP_SYS_ADMIN, so neither ns nor rootless works), where
 * `--sandbox=auto` must pick the inplace sandbox: the base image unpacked over the pod's own `/`,
 * RUN spawned directly, layers from walk snapshots. The pushed image is read back layer by layer
 * (nothing of the pod or the builder may be in it) and run under runc.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { busyboxBase, pushBase } from '../../src/testing/bases.js';
import { run } from '../../src/testing/exec.js';
import { repoRoot } from '../../src/testing/paths.js';
import { runInPod, unpackImage, type UnpackedImage } from '../../src/testing/pod.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoRegistryFlags } from '../../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { layoutImage, layerEntries, type LayerEntryInfo } from '../run/support.js';

/** Paths of the pod and of the builder that no layer may contain. */
const FORBIDDEN = ['proc', 'sys', 'dev', 'kaniko', 'workspace', 'gantry'];

let work: TempDir;
let latest: UnpackedImage;
let reg: TestRegistry;
let baseLayerCount: number;

before(async () => {
  work = await tempDir('executor-inplace');
  const layout = join(work.path, 'layout');
  await run(process.execPath, [join(repoRoot, 'scripts/image/build.mjs'), '--out', layout, '--summary', join(work.path, 'summary.json')], { check: true, timeoutMs: 300_000 });
  latest = await unpackImage(layout, 'latest');
  reg = await startRegistry({ kind: 'plain' });
  const base = await busyboxBase();
  baseLayerCount = (await layoutImage(base.ociDir)).manifest.layers.length;
  await pushBase(base, reg, 'base/busybox:1');
});

after(async () => {
  await reg?.stop();
  await latest?.cleanup();
  await work?.cleanup();
});

async function pull(ref: string, name: string): Promise<string> {
  const layout = join(work.path, name);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work.path, REGISTRY_AUTH_FILE: join(work.path, 'no-auth.json') };
  await run('skopeo', ['copy', '--quiet', '--insecure-policy', '--retry-times=0', ...skopeoRegistryFlags(reg, 'src'), `docker://${reg.host}/${ref}`, `oci:${layout}:pulled`], { check: true, env });
  return layout;
}

async function executor(ctx: string, destination: string) {
  return runInPod({
    image: latest,
    command: ['/kaniko/executor', '--context', 'dir:///workspace', '--dockerfile', '/workspace/Dockerfile', '--destination', `${reg.host}/${destination}`, '--insecure-registry', reg.host],
    mounts: [{ host: ctx, path: '/workspace', readOnly: true }],
    network: 'host',
    timeoutMs: 180_000,
  });
}

describe('RUN in an unprivileged pod (inplace sandbox)', () => {
  test('/kaniko/executor builds RUN + COPY in place, pushes clean layers, and the image runs under runc', async () => {
    const ctx = join(work.path, 'ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'hello.txt'), 'hello\n');
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${reg.host}/base/busybox:1\nRUN echo built > /built.txt && rm /bin/ls\nCOPY hello.txt /\nCMD ["cat", "/built.txt"]\n`);

    const r = await executor(ctx, 'app:1');
    assert.equal(r.code, 0, `executor exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.match(r.stderr, /RUN sandbox: inplace/);

    const layout = await pull('app:1', 'pulled');

    const { manifest, config } = await layoutImage(layout);
    const layers: LayerEntryInfo[][] = await Promise.all(manifest.layers.map((l) => layerEntries(layout, l.digest)));
    assert.equal(config.rootfs.diff_ids.length, layers.length);
    // The base's own layers (busybox has empty /dev, /proc, /sys) and the two this build wrote.
    assert.equal(layers.length, baseLayerCount + 2);
    const [runLayer, copyLayer] = layers.slice(baseLayerCount) as [LayerEntryInfo[], LayerEntryInfo[]];
    const names = (l: LayerEntryInfo[]) => l.map((e) => e.name.replace(/\/$/, ''));
    assert.deepEqual(names(runLayer), ['bin', 'bin/.wh.ls', 'built.txt']);
    assert.equal(runLayer.find((e) => e.name === 'built.txt')?.data?.toString(), 'built\n');
    assert.deepEqual(names(copyLayer), ['hello.txt']);
    for (const [what, l] of [['RUN', runLayer], ['COPY', copyLayer]] as const) {
      const bad = names(l).filter((n) => FORBIDDEN.some((f) => n === f || n.startsWith(f + '/')));
      assert.deepEqual(bad, [], `the ${what} layer holds paths of the pod or the builder`);
    }

    const bundle = join(work.path, 'runc-bundle');
    await run('umoci', ['unpack', '--image', `${layout}:pulled`, bundle], { check: true });
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { terminal: boolean; args: string[] } };
    assert.deepEqual(spec.process.args, ['cat', '/built.txt']);
    spec.process.terminal = false;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    const out = await run('runc', ['--root', join(work.path, 'runc-state'), 'run', '--bundle', bundle, `gantry-inplace-test-${process.pid}`], { timeoutMs: 60_000 });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, 'built\n');
    const ls = await run('test', ['-e', join(bundle, 'rootfs/bin/ls')]);
    assert.notEqual(ls.code, 0, '/bin/ls is whited out');
  });

  // `rm -rf /tmp/*`, common in Dockerfiles, must not reach the builder's own files (layers, context).
  test('multi-stage: the first stage\'s RUN output reaches the final stage through COPY --from after / was wiped', async () => {
    const ctx = join(work.path, 'ctx-multi');
    await mkdir(ctx, { recursive: true });
    await writeFile(
      join(ctx, 'Dockerfile'),
      `FROM ${reg.host}/base/busybox:1 AS build\nRUN mkdir /out && echo artifact > /out/a && echo stage-one > /only-in-build\n` +
        `FROM ${reg.host}/base/busybox:1\nCOPY --from=build /out /copied\nRUN cat /copied/a > /seen && test ! -e /only-in-build && rm -rf /tmp/*\n`,
    );
    const r = await executor(ctx, 'app:multi');
    assert.equal(r.code, 0, `executor exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    const layout = await pull('app:multi', 'pulled-multi');
    const { manifest } = await layoutImage(layout);
    assert.equal(manifest.layers.length, baseLayerCount + 2);
    const added = await Promise.all(manifest.layers.slice(baseLayerCount).map((l) => layerEntries(layout, l.digest)));
    const names = (l: LayerEntryInfo[]) => l.map((e) => e.name.replace(/\/$/, ''));
    assert.deepEqual(names(added[0]!), ['copied', 'copied/a']);
    assert.deepEqual(names(added[1]!), ['seen']);
    assert.equal(added[1]![0]!.data?.toString(), 'artifact\n');
  });
});
