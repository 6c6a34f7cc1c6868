import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { Header } from 'tar-stream';
import { busyboxBase, debianBase, mountsUnder, parseAptSources, pushBase, unmountAllUnder, type BaseImage } from './bases.js';
import { run } from './exec.js';
import { startRegistry } from './registry.js';
import { skopeoInspectRaw } from './skopeo.js';
import { buildahBuild, buildahVersion, localStorageName, type BuildahBuildResult } from './buildah.js';
import { tempDir, type TempDir } from './tmp.js';
import { assertSameTree, diffTrees, ignoreBuildahRunArtifacts, imageTree, normalizeTarPath, type TreeEntry } from './tree.js';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');
const byPath = (tree: readonly TreeEntry[]) => new Map(tree.map((e) => [e.path, e]));

type LayerEntry = { header: Partial<Header> & { name: string }; body?: string };

/** A tar of `entries` in the given order (order matters for whiteout semantics). */
async function tarOf(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const e of entries) {
    const body = e.body === undefined ? undefined : Buffer.from(e.body);
    const header = { mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), ...e.header, ...(body ? { size: body.length } : {}) };
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body) pack.entry(header, body, done);
      else pack.entry(header, done);
    });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** A hand-made OCI layout; each layer gzip or plain, so both decoders of imageTree are exercised. */
async function writeLayout(dir: string, tag: string, layers: Array<{ entries: LayerEntry[]; gzip: boolean }>): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = async (bytes: Buffer, mediaType: string) => {
    const digest = sha(bytes);
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.length };
  };
  const descs = [];
  const diffIds = [];
  for (const l of layers) {
    const raw = await tarOf(l.entries);
    diffIds.push(sha(raw));
    descs.push(await blob(l.gzip ? gzipSync(raw) : raw, `application/vnd.oci.image.layer.v1.tar${l.gzip ? '+gzip' : ''}`));
  }
  const config = await blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } })), 'application/vnd.oci.image.config.v1+json');
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: descs }));
  const manifest = await blob(manifestBytes, 'application/vnd.oci.image.manifest.v1+json');
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
}

const file = (name: string, body: string, extra: Partial<Header> = {}): LayerEntry => ({ header: { name, type: 'file', ...extra }, body });
const dir = (name: string, mode = 0o755): LayerEntry => ({ header: { name, type: 'directory', mode } });
const marker = (name: string): LayerEntry => ({ header: { name, type: 'file' }, body: '' });

describe('imageTree', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('tree');
  });
  after(async () => {
    await tmp?.cleanup();
  });

  it('applies whiteouts, opaque directories and type replacements across layers', async () => {
    const layout = join(tmp.path, 'whiteouts');
    await writeLayout(layout, 'v1', [
      {
        gzip: true,
        entries: [
          dir('./a/'),
          file('./a/x', 'x'),
          file('./a/y', 'y'),
          dir('b/', 0o700),
          file('b/old', 'old'),
          dir('b/keep/'),
          file('b/keep/k', 'k'),
          dir('c/'),
          file('c/d', 'd'),
          file('f', 'f'),
          dir('g/'),
          file('g/child', 'gone with its directory'),
          file('h', 'hard', { mode: 0o4755 }),
          file('etc/conf', 'conf'), // no entry for etc/: an implicit parent
        ],
      },
      {
        gzip: false,
        entries: [
          marker('a/.wh.x'),
          file('b/new', 'new'), // before the opaque marker of its own layer: must survive it
          marker('b/.wh..wh..opq'),
          file('c', 'now a file'),
          dir('f/'),
          file('f/inner', 'i'),
          { header: { name: 'hl', type: 'link', linkname: 'h', mode: 0o4755 } },
          { header: { name: 's', type: 'symlink', linkname: '/a/y', mode: 0o777 } },
          { header: { name: 'g', type: 'symlink', linkname: 'f', mode: 0o777 } },
        ],
      },
      { gzip: true, entries: [marker('a/.wh.y'), marker('.wh.c'), file('c', 'back')] },
    ]);
    const tree = await imageTree(layout, 'v1');
    assert.deepEqual(
      tree.map((e) => e.path),
      ['/', '/a', '/b', '/b/new', '/c', '/etc', '/etc/conf', '/f', '/f/inner', '/g', '/h', '/hl', '/s'],
    );
    const m = byPath(tree);
    assert.deepEqual(m.get('/b'), { path: '/b', type: 'directory', mode: 0o700, uid: 0, gid: 0, size: 0 });
    assert.deepEqual(m.get('/c'), { path: '/c', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 4, sha256: sha('back') });
    assert.equal(m.get('/f')?.type, 'directory');
    assert.equal(m.get('/etc')?.implicit, true);
    assert.equal(m.get('/a')?.implicit, undefined);
    assert.deepEqual(m.get('/hl'), { path: '/hl', type: 'hardlink', mode: 0o4755, uid: 0, gid: 0, size: 4, sha256: sha('hard'), linkTarget: '/h' });
    assert.equal(m.get('/h')?.mode, 0o4755);
    assert.deepEqual(m.get('/s'), { path: '/s', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, linkTarget: '/a/y' });
  });

  it('selects the image by tag and names the tags it has when the tag is missing', async () => {
    const layout = join(tmp.path, 'tags');
    await writeLayout(layout, 'one', [{ gzip: true, entries: [file('only', 'x')] }]);
    assert.deepEqual((await imageTree(layout, 'one')).map((e) => e.path), ['/', '/only']);
    await assert.rejects(imageTree(layout, 'two'), /expected one image tagged two, found 0 \(has: one\)/);
  });

  it('normalises tar paths and refuses ones that escape the root', () => {
    const cases: Array<[string, string]> = [
      ['./a/b/', '/a/b'],
      ['a//b', '/a/b'],
      ['/a/./b', '/a/b'],
      ['.', '/'],
      ['./', '/'],
    ];
    for (const [input, want] of cases) assert.equal(normalizeTarPath(input), want, input);
    assert.throws(() => normalizeTarPath('a/../../etc'), /escapes the root/);
  });
});

describe('diffTrees', () => {
  const base: TreeEntry[] = [
    { path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0 },
    { path: '/etc', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0 },
    { path: '/etc/x', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 2, sha256: sha('x\n') },
    { path: '/l', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, linkTarget: 'etc' },
  ];
  const change = (path: string, patch: Partial<TreeEntry>) => base.map((e) => (e.path === path ? { ...e, ...patch } : e));

  const cases: Array<{ name: string; b: TreeEntry[]; want: string[]; fields?: Array<'mode' | 'uid'> }> = [
    { name: 'identical trees', b: base, want: [] },
    { name: 'mode', b: change('/etc/x', { mode: 0o755 }), want: ['/etc/x: mode 0644 != 0755'] },
    { name: 'setuid bit', b: change('/etc/x', { mode: 0o4644 }), want: ['/etc/x: mode 0644 != 4644'] },
    { name: 'owner and content', b: change('/etc/x', { uid: 1000, sha256: sha('y\n') }), want: [`/etc/x: uid 0 != 1000, sha256 "${sha('x\n')}" != "${sha('y\n')}"`] },
    { name: 'symlink target', b: change('/l', { linkTarget: '/etc' }), want: ['/l: linkTarget "etc" != "/etc"'] },
    { name: 'type', b: change('/l', { type: 'directory', linkTarget: undefined, mode: 0o755 }), want: ['/l: type symlink != directory, mode 0777 != 0755, linkTarget "etc" != (none)'] },
    { name: 'missing on one side', b: base.filter((e) => e.path !== '/etc/x'), want: ['/etc/x: only in a (file 0644 0:0 2 bytes)'] },
    { name: 'extra on one side', b: [...base, { path: '/z', type: 'file', mode: 0o600, uid: 1, gid: 2, size: 0, sha256: sha('') }], want: ['/z: only in b (file 0600 1:2 0 bytes)'] },
    { name: 'fields limit what is compared', b: change('/etc/x', { mode: 0o600, uid: 5 }), fields: ['uid'], want: ['/etc/x: uid 0 != 5'] },
  ];
  for (const c of cases) {
    it(`reports ${c.name}`, () => {
      assert.deepEqual(diffTrees(base, c.b, c.fields ? { fields: c.fields } : {}), c.want);
    });
  }

  it('compares hardlinks as files when asked', () => {
    const asHardlink = change('/etc/x', { type: 'hardlink', linkTarget: '/etc/y' });
    assert.deepEqual(diffTrees(base, asHardlink), ['/etc/x: type file != hardlink, linkTarget (none) != "/etc/y"']);
    assert.deepEqual(diffTrees(base, asHardlink, { hardlinksAsFiles: true }), []);
    const otherContent = change('/etc/x', { type: 'hardlink', linkTarget: '/etc/y', sha256: sha('z') });
    assert.deepEqual(diffTrees(base, otherContent, { hardlinksAsFiles: true }), [`/etc/x: sha256 "${sha('x\n')}" != "${sha('z')}"`]);
  });

  it('uses the given side names and skips ignored paths', () => {
    const b = [...change('/etc/x', { mode: 0o600 }), { path: '/new', type: 'directory' as const, mode: 0o755, uid: 0, gid: 0, size: 0 }];
    assert.deepEqual(diffTrees(base, b, { names: ['gantry', 'buildah'], ignore: (p) => p === '/etc/x' }), ['/new: only in buildah (directory 0755 0:0)']);
  });

  it('assertSameTree lists the first differences and counts the rest', () => {
    const many: TreeEntry[] = Array.from({ length: 40 }, (_, i) => ({ path: `/f${String(i).padStart(2, '0')}`, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0 }));
    assert.doesNotThrow(() => assertSameTree(base, base));
    assert.throws(
      () => assertSameTree(base, [...base, ...many], { names: ['gantry', 'buildah'], limit: 30 }),
      (e: Error) => {
        assert.match(e.message, /^40 differences between gantry and buildah:\n\/f00: only in buildah/);
        assert.match(e.message, /\/f29: only in buildah[^\n]*\n… and 10 more$/);
        assert.doesNotMatch(e.message, /\/f30/);
        return true;
      },
    );
  });

  it('ignores buildah RUN mount points only in their exact empty, root, 0755 shape', () => {
    const artifact = (path: string, type: 'file' | 'directory' = 'file'): TreeEntry => ({ path, type, mode: 0o755, uid: 0, gid: 0, size: 0, ...(type === 'file' ? { sha256: sha('') } : {}) });
    const ours: TreeEntry[] = [{ path: '/', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0 }];
    const buildah = [...ours, artifact('/dev', 'directory'), artifact('/etc', 'directory'), artifact('/etc/hosts'), artifact('/etc/resolv.conf'), artifact('/proc', 'directory')];
    assert.deepEqual(diffTrees(ours, buildah, { ignore: ignoreBuildahRunArtifacts(buildah) }), []);
    // Content in a mount-point file, or a real file under /etc, is a difference to report.
    const withContent = [...buildah.filter((e) => e.path !== '/etc/hosts'), { ...artifact('/etc/hosts'), size: 10, sha256: sha('127.0.0.1\n') }, artifact('/etc/motd')];
    assert.deepEqual(diffTrees(ours, withContent, { ignore: ignoreBuildahRunArtifacts(withContent) }), [
      '/etc: only in b (directory 0755 0:0)',
      '/etc/hosts: only in b (file 0755 0:0 10 bytes)',
      '/etc/motd: only in b (file 0755 0:0 0 bytes)',
    ]);
    // With buildah as the first argument.
    assert.deepEqual(diffTrees(buildah, ours, { ignore: ignoreBuildahRunArtifacts(buildah, 'a') }), []);
  });
});

describe('base images', () => {
  it('parses one-line and deb822 apt sources', () => {
    const oneLine = '# comment\ndeb [signed-by=/k.gpg] http://mirror.example/debian bookworm main\ndeb-src http://src.example bookworm main\n';
    assert.deepEqual(parseAptSources(oneLine, false), [{ uri: 'http://mirror.example/debian', suites: ['bookworm'] }]);
    const deb822 = [
      'Types: deb',
      '# http://snapshot.example',
      'URIs: http://deb.example/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      '',
      'Types: deb',
      'URIs: http://off.example/debian',
      'Suites: bookworm',
      'Enabled: no',
      '',
      'Types: deb-src',
      'URIs: http://src.example/debian',
      'Suites: bookworm',
    ].join('\n');
    assert.deepEqual(parseAptSources(deb822, true), [{ uri: 'http://deb.example/debian', suites: ['bookworm', 'bookworm-updates'] }]);
  });

  it('unmounts everything below a directory before it is deleted, nested mounts included', async () => {
    const tmp = await tempDir('mounts');
    try {
      const outer = join(tmp.path, 'rootfs', 'proc');
      const inner = join(outer, 'sub dir');
      await mkdir(outer, { recursive: true });
      await run('mount', ['-t', 'tmpfs', 'gantry-test', outer], { check: true });
      await mkdir(inner);
      await run('mount', ['-t', 'tmpfs', 'gantry-test', inner], { check: true });
      assert.deepEqual(await mountsUnder(tmp.path), [outer, inner], 'mountinfo escapes (the space) are decoded');
      await unmountAllUnder(tmp.path, 'test dir');
      assert.deepEqual(await mountsUnder(tmp.path), []);
    } finally {
      await unmountAllUnder(tmp.path, 'test dir');
      await tmp.cleanup();
    }
  });

  it('makes the busybox base once and reuses the cached layout', async () => {
    const first = await busyboxBase();
    const started = Date.now();
    const second = await busyboxBase();
    assert.deepEqual(second, first);
    assert.ok(Date.now() - started < 2000, 'a cached base is returned without rebuilding');
    assert.equal(first.ref, `oci:${first.ociDir}:latest`);
    const tree = await imageTree(first.ociDir, first.tag);
    const m = byPath(tree);
    assert.equal(m.get('/bin/busybox')?.sha256, sha(await readFile(process.env.GANTRY_TEST_BUSYBOX ?? '/bin/busybox')));
    assert.deepEqual(m.get('/bin/sh'), { path: '/bin/sh', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, linkTarget: 'busybox' });
    assert.equal(m.get('/tmp')?.mode, 0o1777);
    assertSameTree(tree, await imageTree(first.ociDir, first.tag));
    const manifest = JSON.parse(await readFile(join(first.ociDir, 'index.json'), 'utf8')).manifests[0];
    const image = JSON.parse(await readFile(join(first.ociDir, 'blobs', 'sha256', manifest.digest.slice(7)), 'utf8'));
    const config = JSON.parse(await readFile(join(first.ociDir, 'blobs', 'sha256', image.config.digest.slice(7)), 'utf8'));
    assert.deepEqual(config.config.Cmd, ['sh']);
    assert.match(config.config.Env[0], /^PATH=.*\/bin/);
  });

  it('pushes a base into a test registry unchanged', async () => {
    const base = await busyboxBase();
    const reg = await startRegistry({ kind: 'plain' });
    try {
      assert.equal(await pushBase(base, reg, 'bases/busybox:latest'), `${reg.host}/bases/busybox:latest`);
      const index = JSON.parse(await readFile(join(base.ociDir, 'index.json'), 'utf8'));
      assert.equal(sha(await skopeoInspectRaw(reg, 'bases/busybox:latest')), index.manifests[0].digest);
    } finally {
      await reg.stop();
    }
  });

  // A cold build runs debootstrap against the host's apt mirror (about 1.5-2.5 minutes); later
  // runs read the cached layout.
  it('makes a Debian minbase base with debootstrap', { timeout: 10 * 60_000 }, async () => {
    const base = await debianBase();
    assert.equal(base.tag, 'bookworm');
    const tree = await imageTree(base.ociDir, base.tag);
    assert.ok(tree.length > 1000, `expected a full rootfs, got ${tree.length} entries`);
    const m = byPath(tree);
    assert.equal(m.get('/usr/bin/bash')?.type, 'file');
    assert.equal(m.get('/usr/bin/su')?.mode, 0o4755, 'setuid bits survive');
    assert.equal(m.get('/tmp')?.mode, 0o1777);
    assert.deepEqual(tree.filter((e) => e.path.startsWith('/dev/')), [], 'no device nodes in the image');
    assert.equal(m.get('/etc/resolv.conf'), undefined, 'no host resolv.conf');
    for (const e of tree.filter((x) => x.type === 'hardlink')) assert.ok(e.sha256, `${e.path} has its target's content`);
  });
});

describe('buildahBuild', () => {
  let busybox: BaseImage;
  let ctx: TempDir;
  const results: BuildahBuildResult[] = [];
  before(async () => {
    busybox = await busyboxBase();
    ctx = await tempDir('buildah-ctx');
  });
  after(async () => {
    for (const r of results) await r.cleanup();
    await ctx?.cleanup();
  });

  it('runs here', async () => {
    assert.match(await buildahVersion(), /^buildah version \d+\.\d+/);
  });

  it('maps FROM names to the storage names buildah resolves without search registries', () => {
    const cases: Array<[string, string]> = [
      ['busybox', 'localhost/busybox:latest'],
      ['debian:bookworm', 'localhost/debian:bookworm'],
      ['library/busybox', 'localhost/library/busybox:latest'],
      ['docker.io/library/busybox', 'docker.io/library/busybox:latest'],
      ['localhost:5000/x/y:1', 'localhost:5000/x/y:1'],
      ['localhost/z', 'localhost/z:latest'],
    ];
    for (const [from, want] of cases) assert.equal(localStorageName(from), want, from);
    assert.throws(() => localStorageName(`busybox@${sha('x')}`), /digest references/);
  });

  it('builds a COPY-only Dockerfile whose tree is the base plus exactly the copied files', async () => {
    const dir = join(ctx.path, 'copy');
    const files = { 'a.txt': 'hello\n', 'sub/b.txt': 'sub\n', 'run.sh': '#!/bin/sh\necho hi\n' };
    const dockerfile = 'FROM busybox\nCOPY . /app/\nCOPY --chown=1000:1000 a.txt /owned.txt\nCOPY --chmod=0600 a.txt /secret.txt\n';
    await mkdir(join(dir, 'sub'), { recursive: true });
    for (const [name, body] of Object.entries(files)) await writeFile(join(dir, name), body);
    await writeFile(join(dir, 'Dockerfile'), dockerfile);
    await chmod(join(dir, 'a.txt'), 0o644);
    await chmod(join(dir, 'sub'), 0o755);
    await chmod(join(dir, 'sub', 'b.txt'), 0o644);
    await chmod(join(dir, 'Dockerfile'), 0o644);
    await chmod(join(dir, 'run.sh'), 0o755);
    await symlink('a.txt', join(dir, 'link'));

    const result = await buildahBuild({ contextDir: dir, baseImages: { busybox: busybox.ref } });
    results.push(result);
    const built = await imageTree(result.ociDir, result.tag);
    const base = await imageTree(busybox.ociDir, busybox.tag);
    const size = (s: string) => Buffer.byteLength(s);
    assert.deepEqual(diffTrees(base, built, { names: ['base', 'buildah'] }), [
      '/app: only in buildah (directory 0755 0:0)',
      `/app/Dockerfile: only in buildah (file 0644 0:0 ${size(dockerfile)} bytes)`,
      `/app/a.txt: only in buildah (file 0644 0:0 ${size(files['a.txt'])} bytes)`,
      '/app/link: only in buildah (symlink -> a.txt 0777 0:0)',
      `/app/run.sh: only in buildah (file 0755 0:0 ${size(files['run.sh'])} bytes)`,
      '/app/sub: only in buildah (directory 0755 0:0)',
      `/app/sub/b.txt: only in buildah (file 0644 0:0 ${size(files['sub/b.txt'])} bytes)`,
      `/owned.txt: only in buildah (file 0644 1000:1000 ${size(files['a.txt'])} bytes)`,
      `/secret.txt: only in buildah (file 0600 0:0 ${size(files['a.txt'])} bytes)`,
    ]);
    const m = byPath(built);
    assert.equal(m.get('/app/sub/b.txt')?.sha256, sha(files['sub/b.txt']));
    assert.equal(m.get('/secret.txt')?.sha256, sha(files['a.txt']));
  });

  it('runs RUN steps with chroot isolation, passes build args and stops at the target stage', async () => {
    const dir = join(ctx.path, 'run');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'Dockerfile'),
      'FROM busybox AS one\nARG MSG=default\nRUN echo "$MSG" > /msg && id -u > /uid\n\nFROM one AS two\nRUN echo never > /two\n',
    );
    const result = await buildahBuild({ contextDir: dir, baseImages: { busybox: busybox.ref }, buildArgs: { MSG: 'from-arg' }, target: 'one' });
    results.push(result);
    const built = await imageTree(result.ociDir, result.tag);
    const base = await imageTree(busybox.ociDir, busybox.tag);
    // What RUN leaves behind besides its own output is buildah's mount points, and nothing else.
    assert.deepEqual(diffTrees(base, built, { names: ['base', 'buildah'], ignore: ignoreBuildahRunArtifacts(built) }), [
      '/msg: only in buildah (file 0644 0:0 9 bytes)',
      '/uid: only in buildah (file 0644 0:0 2 bytes)',
    ]);
    const m = byPath(built);
    assert.equal(m.get('/msg')?.sha256, sha('from-arg\n'));
    assert.equal(m.get('/uid')?.sha256, sha('0\n'));
    assert.equal(m.get('/two'), undefined);
  });

  it('fails with buildah output when the Dockerfile is broken', async () => {
    const dir = join(ctx.path, 'broken');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), 'FROM busybox\nRUN exit 3\n');
    await assert.rejects(buildahBuild({ contextDir: dir, baseImages: { busybox: busybox.ref } }), /buildah bud[\s\S]*failed[\s\S]*exit status 3/);
  });
});
