/**
 * The build engine driving the inplace sandbox on a temporary root (the `root` option): stages
 * take turns in that one root (wiped before each), base layers are unpacked by the sandbox, COPY
 * and WORKDIR write into it, and a later stage's COPY --from reads the earlier stage from its
 * layers. The image must be the one the default (separate root per stage) engine builds.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LookupFunction } from 'node:net';
import { busyboxBase, pushBase, type BaseImage } from '../testing/bases.js';
import { startRegistry } from '../testing/registry.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { build } from './build.js';
import type { BuildOptions } from './options.js';

const DOCKERFILE = `ARG BASE
FROM \${BASE} AS build
COPY a.txt /out/a.txt
WORKDIR /out/sub
COPY a.txt b.txt ./

FROM \${BASE}
COPY --from=build /out /copied
COPY b.txt /b.txt
`;


describe('inplace builds on a temporary root (as root: the sandbox sets owners)', () => {
  let base: BaseImage;
  let tmp: TempDir;
  let ctx: string;

  before(async () => {
    base = await busyboxBase();
    tmp = await tempDir('build-inplace');
    ctx = join(tmp.path, 'ctx');
    await mkdir(ctx);
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
    await writeFile(join(ctx, 'a.txt'), 'a\n');
    await writeFile(join(ctx, 'b.txt'), 'b\n');
  });
  after(() => tmp?.cleanup());

  const opts = (out: string, extra: Partial<BuildOptions>): BuildOptions => ({
    context: ctx,
    buildArgs: { BASE: base.ref },
    reproducible: true,
    noPush: true,
    ociLayoutPath: join(tmp.path, out),
    workDir: tmp.path,
    ...extra,
  });

  it('builds the same image as the default engine without unpacking anything into the root when no step needs it', async () => {
    const root = join(tmp.path, 'root');
    await mkdir(join(root, 'keep'), { recursive: true });
    await writeFile(join(root, 'keep', 'marker'), 'kept\n');
    await writeFile(join(root, 'junk'), 'from before the build\n');

    const plain = await build(opts('plain', {}));
    const inplace = await build(opts('inplace', { sandbox: 'inplace', inplace: { root, ignorePaths: ['/keep'] } }));

    assert.equal(inplace.digest, plain.digest);
    assert.equal(inplace.steps.length, plain.steps.length);
    assert.deepEqual(
      inplace.steps.map((s) => s.layer),
      plain.steps.map((s) => s.layer),
    );
    // COPY and WORKDIR only resolve a few paths: they write their layers from sparse roots
    // (src/build/path-root.ts), so the root is neither wiped nor given the base image.
    assert.equal(existsSync(join(root, 'bin/busybox')), false);
    assert.equal(await readFile(join(root, 'junk'), 'utf8'), 'from before the build\n');
    // --ignore-path: never wiped.
    assert.equal(await readFile(join(root, 'keep/marker'), 'utf8'), 'kept\n');
  });

  it('refuses RUN on a root other than /', async () => {
    const root = join(tmp.path, 'root-run');
    await mkdir(root);
    await writeFile(join(ctx, 'Dockerfile.run'), `FROM ${base.ref}\nRUN true\n`);
    await assert.rejects(build(opts('run', { dockerfile: join(ctx, 'Dockerfile.run'), sandbox: 'inplace', inplace: { root } })), /runs commands on \/ only/);
  });

  it('connects to registries through the lookup it is given (names resolved before / is replaced)', async () => {
    const reg = await startRegistry({ kind: 'plain' });
    try {
      await pushBase(base, reg, 'base/busybox:1');
      const host = `registry.gantry.invalid:${reg.host.split(':')[1]}`;
      const asked: string[] = [];
      const lookup = ((name: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) => {
        asked.push(name);
        if (o.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
        else cb(null, '127.0.0.1', 4);
      }) as unknown as LookupFunction;
      await writeFile(join(ctx, 'Dockerfile.lookup'), `FROM ${host}/base/busybox:1\nCOPY a.txt /\n`);
      const r = await build(opts('lookup', { dockerfile: join(ctx, 'Dockerfile.lookup'), registry: { lookup, insecure: [host] } }));
      assert.match(r.digest, /^sha256:/);
      assert.ok(asked.includes('registry.gantry.invalid'), `lookups: ${asked.join(', ')}`);
    } finally {
      await reg.stop();
    }
  });
});
