/**
 * The real thing: `apt-get install` in a RUN on the debootstrapped Debian base, built by gantry
 * (ns sandbox, host network, the mirror debootstrap used) and by buildah from the same Dockerfile.
 * The installed package's files must match exactly; files apt and dpkg stamp with the time or
 * order differently per run (logs, caches, backups of its own databases) only need to exist on
 * both sides.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { debianBase, type BaseImage } from '../../src/testing/bases.js';
import { assertSameTree, ignoreBuildahRunArtifacts, type TreeEntry } from '../../src/testing/tree.js';
import { buildBoth, comparisonDir, writeContext, type ComparedBuild } from '../compare/support.js';

const DOCKERFILE = `ARG BASE
FROM \${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*
`;

/** Content that differs between any two runs of apt, whoever runs it. */
const VOLATILE = [/^\/var\/log\//, /^\/var\/cache\/debconf\/.*-old$/, /^\/var\/cache\/debconf\/(config|templates)\.dat$/, /^\/var\/cache\/ldconfig\/aux-cache$/, /^\/var\/lib\/dpkg\/(status-old|lock.*|triggers\/Lock)$/, /^\/var\/cache\/apt\//, /^\/var\/lib\/apt\/extended_states$/];

describe('RUN apt-get install on Debian: gantry and buildah build the same tree', () => {
  let base: BaseImage;
  let dir: Awaited<ReturnType<typeof comparisonDir>>;
  let both: ComparedBuild;
  before(async () => {
    base = await debianBase();
    dir = await comparisonDir('run-debian');
    await writeContext(dir.ctx, { Dockerfile: DOCKERFILE });
    both = await buildBoth({ contextDir: dir.ctx, outDir: dir.root, base: { name: 'debian:bookworm', image: base } });
  });
  after(() => dir?.cleanup());

  it('installs the package', () => {
    const hello = both.gantry.find((e) => e.path === '/usr/bin/hello');
    assert.equal(hello?.type, 'file');
    assert.equal(hello?.mode, 0o755);
    assert.ok(both.gantry.some((e) => e.path === '/var/lib/dpkg/info/hello.list'));
    assert.ok(!both.gantry.some((e) => e.path.startsWith('/var/lib/apt/lists/') && e.type === 'file' && !e.path.endsWith('/lock')));
  });

  it('has the same tree as buildah', () => {
    const artifacts = ignoreBuildahRunArtifacts(both.buildah);
    const volatile = (path: string, a: TreeEntry | undefined, b: TreeEntry | undefined) =>
      VOLATILE.some((re) => re.test(path)) && a !== undefined && b !== undefined && a.type === b.type;
    assertSameTree(both.gantry, both.buildah, {
      names: ['gantry', 'buildah'],
      hardlinksAsFiles: true,
      ignore: (path, a, b) => artifacts(path, a, b) || volatile(path, a, b),
    });
  });
});
