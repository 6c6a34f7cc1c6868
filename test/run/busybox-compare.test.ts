/**
 * RUN on the busybox base, built by gantry (ns sandbox) and by buildah from the same Dockerfile:
 * the merged file trees must match (apart from buildah's committed mount points), and gantry's
 * layers must express each change the OCI way: whiteouts, opaque directories, hard links, modes,
 * and never a mount point.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { assertSameTree, ignoreBuildahRunArtifacts } from '../../src/testing/tree.js';
import { buildBoth, comparisonDir, writeContext, type ComparedBuild } from '../compare/support.js';
import { layoutImage, newLayers, type LayerEntryInfo } from './support.js';

const DOCKERFILE = `
ARG BASE
FROM \${BASE} AS build
RUN mkdir -p /out/sub && echo built > /out/sub/artifact && chmod 0750 /out/sub

FROM \${BASE}
ARG A=1
ENV E=env
RUN echo hi > /a
RUN rm /bin/ls
RUN mkdir -p /dd/sub && echo 1 > /dd/sub/one && echo 2 > /dd/two
RUN rm -rf /dd && mkdir /dd && echo new > /dd/new
RUN echo data > /h1 && ln /h1 /h2
RUN touch /suid && chmod 0755 /suid && chmod u+s /suid
RUN echo "$A $E" > /env-values
WORKDIR /work/dir
RUN pwd > here
USER daemon
RUN echo $(id -un):$(id -u):$(id -g) > /tmp/id-daemon
USER root
COPY --from=build /out /copied
`;

// The RUN layers of the final stage, in Dockerfile order (WORKDIR adds one before `pwd`).
const RUNS = ['echo', 'rm', 'mkdir', 'recreate', 'hardlink', 'suid', 'env', 'workdir', 'pwd', 'id'] as const;

describe('RUN on busybox: gantry and buildah build the same tree', () => {
  let base: BaseImage;
  let dir: Awaited<ReturnType<typeof comparisonDir>>;
  let both: ComparedBuild;
  let layers: Record<(typeof RUNS)[number], LayerEntryInfo[]>;
  before(async () => {
    base = await busyboxBase();
    dir = await comparisonDir('run-busybox');
    await writeContext(dir.ctx, { Dockerfile: DOCKERFILE });
    both = await buildBoth({ contextDir: dir.ctx, outDir: dir.root, base: { name: 'busybox', image: base } });
    const baseCount = (await layoutImage(base.ociDir)).manifest.layers.length;
    const added = await newLayers(both.gantryLayout, baseCount);
    layers = Object.fromEntries(RUNS.map((r, i) => [r, added[i]!])) as typeof layers;
  });
  after(() => dir?.cleanup());

  it('has the same merged tree as buildah', () => {
    assertSameTree(both.gantry, both.buildah, { names: ['gantry', 'buildah'], hardlinksAsFiles: true, ignore: ignoreBuildahRunArtifacts(both.buildah) });
  });

  const byName = (l: LayerEntryInfo[], name: string) => l.find((e) => e.name === name);

  it('records a deleted base file as a whiteout', () => {
    assert.ok(byName(layers.rm, 'bin/.wh.ls'), JSON.stringify(layers.rm.map((e) => e.name)));
    assert.equal(both.gantry.find((e) => e.path === '/bin/ls'), undefined);
  });

  it('marks a directory deleted and recreated in one RUN as opaque', () => {
    assert.ok(byName(layers.recreate, 'dd/.wh..wh..opq'));
    assert.equal(byName(layers.recreate, 'dd/new')?.data?.toString(), 'new\n');
    assert.deepEqual(both.gantry.filter((e) => e.path.startsWith('/dd/')).map((e) => e.path), ['/dd/new']);
  });

  it('keeps hard links as links and setuid bits', () => {
    const names = layers.hardlink.filter((e) => e.name === 'h1' || e.name === 'h2');
    assert.deepEqual(names.map((e) => e.type).sort(), ['file', 'link']);
    assert.equal(byName(layers.suid, 'suid')?.mode, 0o4755);
  });

  it('puts ARGs and ENV in the environment, the working directory in place, USER names resolved', () => {
    const file = (p: string) => both.gantry.find((e) => e.path === p);
    assert.equal(byName(layers.env, 'env-values')?.data?.toString(), '1 env\n');
    assert.equal(byName(layers.pwd, 'work/dir/here')?.data?.toString(), '/work/dir\n');
    assert.equal(file('/tmp/id-daemon')?.uid, 1);
    assert.equal(byName(layers.id, 'tmp/id-daemon')?.data?.toString(), 'daemon:1:1\n');
  });

  it('never captures a mount point', () => {
    const mountPoints = /^(dev|proc|sys|run)(\/|$)|^etc\/(hosts|resolv\.conf|hostname)$/;
    for (const [run, entries] of Object.entries(layers)) {
      const bad = entries.filter((e) => mountPoints.test(e.name));
      assert.deepEqual(bad, [], `layer of RUN ${run}`);
    }
    // Only the changed path and its parents: `echo hi > /a` is exactly one entry.
    assert.deepEqual(layers.echo.map((e) => e.name), ['a']);
  });

  it('writes history and config as BuildKit does', async () => {
    const { config } = await layoutImage(both.gantryLayout);
    const runs = (config.history ?? []).filter((h) => h.created_by?.startsWith('RUN '));
    assert.equal(runs.length, 9);
    for (const h of runs) assert.equal(h.empty_layer, undefined, h.created_by);
    assert.equal(runs[0]!.created_by, 'RUN |1 A=1 /bin/sh -c echo hi > /a # buildkit');
    assert.equal(runs[8]!.created_by, 'RUN |1 A=1 /bin/sh -c echo $(id -un):$(id -u):$(id -g) > /tmp/id-daemon # buildkit');
    assert.ok(config.config?.Env?.includes('E=env'));
    assert.ok(!config.config?.Env?.some((e) => e.startsWith('A=')), 'ARG values never enter the config');
    assert.equal(config.rootfs.diff_ids.length, (await layoutImage(both.gantryLayout)).manifest.layers.length);
  });
});
