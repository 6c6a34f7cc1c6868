/**
 * RUN built by the CLI as a real unprivileged user (the rootless sandbox: the CLI re-executes
 * itself in a user namespace) and by buildah as root, from the same Dockerfile on the same busybox
 * base: the merged trees must match, ownership included (chown, a user added by hand, USER). A second user
 * without /etc/subuid range gets squashed ownership: root-only steps still build, with a warning,
 * and a chown to another id fails with the command's own error.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { buildahBuild } from '../../src/testing/buildah.js';
import { run } from '../../src/testing/exec.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { assertSameTree, ignoreBuildahRunArtifacts, imageTree, type TreeEntry } from '../../src/testing/tree.js';
import { createTestUser, type TestUser } from '../../src/testing/subids.js';

// dist/test/run/<this>.js -> the repository root, where bin/gantry.js loads dist/.
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const GANTRY = join(REPO, 'bin', 'gantry.js');

const ROOT_STEPS = `
ARG BASE
FROM \${BASE}
RUN echo hi > /a
RUN rm /bin/ls
RUN mkdir -p /dd/sub && echo 1 > /dd/sub/one && echo 2 > /dd/two
RUN rm -rf /dd && mkdir /dd && echo new > /dd/new
RUN echo data > /h1 && ln /h1 /h2
RUN touch /suid && chmod 0755 /suid && chmod u+s /suid
`;

// What `adduser -D -u 1234 app` does, spelled out: the host's busybox-static (which the base is
// made of) is built without adduser.
const OWNERSHIP_STEPS = `RUN touch /owned && chown 1000:1000 /owned
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group && mkdir /home/app && chown 1234:1234 /home/app
USER app
RUN touch /home/app/x
`;

async function sh(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { check: true })).stdout;
}

function createUser(parent: string, withSubIds: boolean): Promise<TestUser> {
  return createTestUser(parent, { prefix: 'gantryrc', withSubIds, systemHome: true });
}

/** Copies the base layout and writes the context into the user's directory, all owned by the user. */
async function prepare(user: TestUser, base: BaseImage, dockerfile: string): Promise<{ layout: string; ctx: string }> {
  const layout = join(user.dir, 'base');
  await sh('cp', ['-r', base.ociDir, layout]);
  const ctx = join(user.dir, 'ctx');
  mkdirSync(ctx);
  writeFileSync(join(ctx, 'Dockerfile'), dockerfile);
  mkdirSync(join(user.dir, 'home'));
  await sh('chown', ['-R', `${user.uid}:${user.gid}`, user.dir]);
  return { layout, ctx };
}

interface CliResult {
  code: number;
  output: string;
}

/** `gantry build --sandbox=rootless` as `user`, with a clean environment and HOME in its directory. */
function buildAsUser(user: TestUser, layout: string, ctx: string, dockerfile: string, dest: string): Promise<CliResult> {
  const args = [
    `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--',
    process.execPath, GANTRY, 'build', '--sandbox=rootless', '--progress=plain',
    '-f', join(ctx, dockerfile), '--build-arg', `BASE=oci:${layout}:latest`,
    '--output', `type=oci,dest=${dest}`, ctx,
  ];
  return new Promise((resolvePromise) => {
    execFile('setpriv', args, {
      cwd: user.dir,
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: join(user.dir, 'home'), LC_ALL: 'C' },
      timeout: 120_000,
      maxBuffer: 16 << 20,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, output: `${stdout}${stderr}` });
    });
  });
}

const find = (tree: readonly TreeEntry[], path: string) => tree.find((e) => e.path === path);
const owner = (e: TreeEntry | undefined) => (e ? `${e.uid}:${e.gid}` : '(missing)');

describe('RUN as an unprivileged user with a subordinate id range: the rootless build matches buildah', () => {
  let tmp: TempDir;
  let user: TestUser;
  let cli: CliResult;
  let gantry: TreeEntry[];
  let buildah: TreeEntry[];

  before(async () => {
    const base = await busyboxBase();
    tmp = await tempDir('rootless-compare');
    chmodSync(tmp.path, 0o755);
    user = await createUser(tmp.path, true);
    const dockerfile = ROOT_STEPS + OWNERSHIP_STEPS;
    const { layout, ctx } = await prepare(user, base, dockerfile);
    const dest = join(user.dir, 'out');
    cli = await buildAsUser(user, layout, ctx, 'Dockerfile', dest);
    assert.equal(cli.code, 0, cli.output);
    gantry = await imageTree(dest);
    const b = await buildahBuild({
      contextDir: ctx,
      baseImages: { busybox: base.ref },
      buildArgs: { BASE: 'busybox' },
      outDir: join(tmp.path, 'buildah'),
    });
    buildah = await imageTree(b.ociDir, b.tag);
  });
  after(async () => {
    await user?.cleanup();
    await tmp?.cleanup();
  });

  it('uses the rootless sandbox with the full mapping (no squashing warning)', () => {
    assert.match(cli.output, /RUN sandbox: rootless/);
    assert.doesNotMatch(cli.output, /SQUASHED OWNERSHIP/);
  });

  it('has the same merged tree as buildah, owners included', () => {
    assertSameTree(gantry, buildah, { names: ['gantry-rootless', 'buildah'], hardlinksAsFiles: true, ignore: ignoreBuildahRunArtifacts(buildah) });
  });

  it('keeps every change: new file, whiteout, opaque directory, hard link, setuid, chown, added user, USER', () => {
    assert.equal(find(gantry, '/a')?.type, 'file');
    assert.equal(find(gantry, '/bin/ls'), undefined);
    assert.deepEqual(gantry.filter((e) => e.path.startsWith('/dd/')).map((e) => e.path), ['/dd/new']);
    assert.deepEqual([find(gantry, '/h1')?.type, find(gantry, '/h2')?.type].sort(), ['file', 'hardlink']);
    assert.equal(find(gantry, '/suid')?.mode, 0o4755);
    assert.equal(owner(find(gantry, '/owned')), '1000:1000');
    assert.equal(owner(find(gantry, '/home/app')), '1234:1234');
    assert.equal(owner(find(gantry, '/home/app/x')), '1234:1234');
  });
});

describe('RUN as an unprivileged user without subordinate ids: squashed ownership', () => {
  let tmp: TempDir;
  let user: TestUser;
  let paths: { layout: string; ctx: string };
  let rootOnly: CliResult;
  let chown: CliResult;
  let tree: TreeEntry[];

  before(async () => {
    const base = await busyboxBase();
    tmp = await tempDir('rootless-compare-squash');
    chmodSync(tmp.path, 0o755);
    user = await createUser(tmp.path, false);
    paths = await prepare(user, base, ROOT_STEPS);
    writeFileSync(join(paths.ctx, 'Dockerfile.chown'), `${ROOT_STEPS}RUN touch /f && chown 1000 /f\n`);
    await sh('chown', [`${user.uid}:${user.gid}`, join(paths.ctx, 'Dockerfile.chown')]);
    rootOnly = await buildAsUser(user, paths.layout, paths.ctx, 'Dockerfile', join(user.dir, 'out'));
    if (rootOnly.code === 0) tree = await imageTree(join(user.dir, 'out'));
    chown = await buildAsUser(user, paths.layout, paths.ctx, 'Dockerfile.chown', join(user.dir, 'out-chown'));
  });
  after(async () => {
    await user?.cleanup();
    await tmp?.cleanup();
  });

  it('builds the root-only steps, warning that ownership is squashed', () => {
    assert.equal(rootOnly.code, 0, rootOnly.output);
    assert.match(rootOnly.output, /RUN sandbox: rootless/);
    assert.match(rootOnly.output, /SQUASHED OWNERSHIP/);
    assert.match(rootOnly.output, /has no range in \/etc\/subuid/);
    assert.equal(find(tree, '/bin/ls'), undefined);
    assert.deepEqual(tree.filter((e) => e.path.startsWith('/dd/')).map((e) => e.path), ['/dd/new']);
    assert.equal(find(tree, '/suid')?.mode, 0o4755);
    for (const p of ['/a', '/h1', '/h2', '/suid', '/dd/new']) assert.equal(owner(find(tree, p)), '0:0', p);
  });

  it('fails chown to an unmapped id, naming the step and showing the command error', () => {
    assert.notEqual(chown.code, 0, chown.output);
    assert.match(chown.output, /chown 1000 \/f/);
    assert.match(chown.output, /chown: \/f: Invalid argument/);
  });
});
