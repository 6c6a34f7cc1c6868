/**
 * COPY, ADD and WORKDIR on a stage whose root is not unpacked write their layer from a sparse
 * root built from layer indexes (src/build/path-root.ts). The image must be byte for byte the
 * one the fully unpacked root gives (GANTRY_SPARSE_ROOT=0), through symlinked destinations,
 * whiteouts and opaque directories left by RUNs, --chown names from an /etc/passwd a RUN
 * changed, --parents, --link, --chmod (created parents too), a WORKDIR under a USER name, hard
 * links in the context, a COPY onto a symlink to a file, and files and directories replacing
 * each other.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildOptions } from '../../src/build/index.js';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { writeContext } from '../compare/support.js';
import { layoutImage, newLayers } from '../run/support.js';
import { startCacheFixture, type CacheFixture } from './support.js';

const DOCKERFILE = `ARG BASE
FROM \${BASE} AS copyonly
COPY a.txt /etc/
COPY --chown=daemon dir/ /usr/bin/sub/
COPY hl/ /hl/
COPY --chmod=750 dir/ /new/deep/
WORKDIR /root/w

FROM \${BASE}
RUN mkdir -p /opt/real/sub /srv/keep /home/x && ln -s real /opt/link && ln -s /opt/real /opt/abslink && echo x > /srv/keep/f && echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group
RUN rm -rf /srv/keep /home && mkdir /srv/keep && touch /srv/keep/new
COPY a.txt /opt/link/
COPY dir/ /opt/abslink/sub/
COPY --chown=app:app a.txt /srv/keep/
COPY a.txt /etc/hostname
COPY a.txt /usr
RUN echo old > /srv/target.txt && ln -s target.txt /srv/flink && mkdir -p /srv/t/name/sub /srv/t/x && touch /srv/t/name/sub/f /srv/t/d /srv/t/x/y && ln /srv/t/x/y /srv/t/x/y2
COPY a.txt /srv/flink
COPY tree/ /srv/t/
COPY hl/ /srv/t/x/
COPY --chmod=750 dir/ /srv/t/new/deep/
COPY --parents dir/x/y.txt /p/
COPY --link --chown=app a.txt /linked/
WORKDIR /home/app/work
USER app
WORKDIR /opt/link/w2
COPY --chmod=700 dir /opt/link/chmodded
ADD arch.tar /opt/link/unpacked/
COPY a.txt /after-full/
`;

describe('path-only steps on a sparse root', () => {
  let base: BaseImage;
  let tmp: TempDir;
  let baseCount: number;

  const buildOnce = async (name: string, target: string | undefined, sparse: boolean) => {
    const lines: string[] = [];
    const layout = join(tmp.path, name);
    const opts: BuildOptions = {
      context: join(tmp.path, 'ctx'),
      ociLayoutPath: layout,
      workDir: tmp.path,
      defaultOutputDir: false,
      reproducible: true,
      // Each build starts without layer indexes: the copy-only stage reads them from the blobs.
      env: { XDG_CACHE_HOME: join(tmp.path, `xdg-${name}`), SOURCE_DATE_EPOCH: '1700000000', ...(sparse ? {} : { GANTRY_SPARSE_ROOT: '0' }) },
      buildArgs: { BASE: base.ref },
      cacheDir: join(tmp.path, 'run-cache'),
      sandbox: 'ns',
      logger: { log: (_level, message) => lines.push(message) },
      ...(target ? { target } : {}),
    };
    const result = await build(opts);
    return { result, layout, lines };
  };

  before(async () => {
    base = await busyboxBase();
    baseCount = (await layoutImage(base.ociDir)).manifest.layers.length;
    tmp = await tempDir('sparse-root');
    const ctx = join(tmp.path, 'ctx');
    await mkdir(ctx);
    await writeContext(ctx, { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'dir/x/y.txt': 'y\n', 'dir/z': 'z\n', 'src/f1': 'f1\n', 'src/sub/f2': 'f2\n', 'hl/one': 'linked\n', 'hl/y': 'new y\n', 'tree/name': 'file now\n', 'tree/d/inner': 'dir now\n' });
    await link(join(ctx, 'hl/one'), join(ctx, 'hl/two'));
    execFileSync('tar', ['-cf', join(ctx, 'arch.tar'), '--owner=0', '--group=0', '--mtime=@1600000000', '-C', join(ctx, 'src'), 'f1', 'sub']);
  });
  after(() => tmp?.cleanup());

  for (const target of ['copyonly', undefined]) {
    it(`gives the image the full root gives (${target ? 'COPY/WORKDIR only, indexes read from the base blob' : 'after RUNs, --chown names, --parents, --link, USER, ADD'})`, async () => {
      const sparse = await buildOnce(`sparse-${target ?? 'final'}`, target, true);
      const full = await buildOnce(`full-${target ?? 'final'}`, target, false);
      assert.ok(sparse.lines.some((l) => l.includes('sparse root')), 'the sparse root was used');
      assert.ok(!full.lines.some((l) => l.includes('sparse root')), 'GANTRY_SPARSE_ROOT=0 turns it off');
      const [a, b] = await Promise.all([newLayers(sparse.layout, baseCount), newLayers(full.layout, baseCount)]);
      assert.deepEqual(a, b);
      assert.equal(sparse.result.digest, full.result.digest);
    });
  }

  it('writes the right files through symlinked destinations and with names from the changed /etc/passwd', async () => {
    const { layout } = await buildOnce('check', undefined, true);
    const layers = await newLayers(layout, baseCount);
    const all = layers.flat();
    const find = (name: string) => all.find((e) => e.name === name);
    const last = (name: string) => [...all].reverse().find((e) => e.name === name);
    assert.equal(find('opt/real/a.txt')?.data?.toString(), 'a\n');
    assert.equal(find('opt/real/sub/x/y.txt')?.data?.toString(), 'y\n');
    assert.equal(find('srv/keep/a.txt')?.uid, 1234);
    assert.equal(find('usr/a.txt')?.data?.toString(), 'a\n');
    assert.equal(find('p/dir/x/y.txt')?.data?.toString(), 'y\n');
    assert.equal(find('linked/a.txt')?.uid, 1234);
    assert.equal(find('opt/real/w2')?.uid, 1234);
    assert.equal(find('opt/real/chmodded/z')?.mode, 0o700);
    assert.equal(find('opt/real/unpacked/sub/f2')?.data?.toString(), 'f2\n');
    assert.equal(last('srv/target.txt')?.data?.toString(), 'a\n', 'a COPY onto a symlink writes through it');
    assert.equal(last('srv/t/name')?.data?.toString(), 'file now\n');
    assert.equal(last('srv/t/d/inner')?.data?.toString(), 'dir now\n');
    const two = last('srv/t/x/two');
    assert.ok(two?.type === 'link' || last('srv/t/x/one')?.type === 'link', 'hard links in the context stay hard links');
    assert.equal(last('srv/t/new')?.mode, 0o750, '--chmod applies to created parents');
  });
});

describe('a one-line change after cached steps', () => {
  let fx: CacheFixture;
  before(async () => {
    fx = await startCacheFixture();
  });
  after(() => fx?.close());

  it('writes the changed COPY layer without downloading any layer, and the image equals an uncached build', async () => {
    const dockerfile = `FROM ${'${BASE}'}\nRUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && mkdir -p /opt/real && ln -s /opt/real /opt/app\nCOPY --chown=app app.txt /opt/app/\n`.replace('${BASE}', fx.base);
    const ctx = await fx.context(dockerfile, { 'app.txt': 'one\n' });
    const xdg = await fx.scratch('gantry-xdg-');
    const env = { ...process.env, XDG_CACHE_HOME: xdg };
    await build(fx.opts(ctx, 'sparse/app:1', { env, sandbox: 'ns', cacheDir: await fx.scratch('gantry-runcache-') }));
    await writeFile(join(ctx, 'app.txt'), 'two\n');
    const from = fx.proxy.hits.length;
    const warm = await build(fx.opts(ctx, 'sparse/app:2', { env, sandbox: 'ns', cacheDir: await fx.scratch('gantry-runcache-') }));
    assert.deepEqual(warm.steps.map((st) => st.cached), [true, false]);
    const layers = await fx.manifestLayers('sparse/app', '2');
    const gets = fx.proxy.hits.slice(from).filter((h) => h.method === 'GET' && layers.some((d) => h.path.includes(`/blobs/${d}`)));
    assert.deepEqual(gets, [], 'no layer blob is downloaded: the base and RUN layers are known from their indexes');

    const unpacked = { ...env, XDG_CACHE_HOME: await fx.scratch('gantry-xdg-'), GANTRY_SPARSE_ROOT: '0' };
    const plain = await build(fx.opts(ctx, 'sparse/plain:1', { env: unpacked, sandbox: 'ns', cache: { enabled: false }, cacheDir: await fx.scratch('gantry-runcache-') }));
    assert.equal(warm.digest, plain.digest);
  });
});
