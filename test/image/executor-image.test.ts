/**
 * The executor image, built by `scripts/image/build.mjs` (gantry building itself), inspected
 * from its OCI layout and run in a simulated pod (src/testing/pod.ts) the way Kaniko recipes run
 * /kaniko/executor: no CAP_SYS_ADMIN, no host filesystem, host network to reach the registry.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ImageConfig } from '../../src/oci/types.js';
import { busyboxBase, pushBase } from '../../src/testing/bases.js';
import { run } from '../../src/testing/exec.js';
import { repoRoot } from '../../src/testing/paths.js';
import { dockerDefaultCapMask, readLayoutImage, runInPod, unpackImage, type PodMount, type PodResult, type UnpackedImage } from '../../src/testing/pod.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoRegistryFlags } from '../../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { imageTree, type TreeEntry } from '../../src/testing/tree.js';

interface TagSummary {
  digest: string;
  layers: number;
  size: number;
}
interface BuildSummary {
  layout: string;
  tags: Record<string, TagSummary>;
  bundleBytes: number;
  version: string;
}

const pkgVersion = (JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

let work: TempDir;
let summary: BuildSummary;
let latest: UnpackedImage;
let debug: UnpackedImage;
const configs: Record<string, ImageConfig> = {};

before(async () => {
  work = await tempDir('executor-image');
  const layout = join(work.path, 'layout');
  const summaryFile = join(work.path, 'summary.json');
  await run(process.execPath, [join(repoRoot, 'scripts/image/build.mjs'), '--out', layout, '--summary', summaryFile], { check: true, timeoutMs: 300_000 });
  summary = JSON.parse(await readFile(summaryFile, 'utf8')) as BuildSummary;
  for (const tag of ['latest', 'debug']) configs[tag] = (await readLayoutImage(layout, tag)).config;
  latest = await unpackImage(layout, 'latest');
  debug = await unpackImage(layout, 'debug');
});

after(async () => {
  await latest?.cleanup();
  await debug?.cleanup();
  await work?.cleanup();
});

function envOf(tag: string): Record<string, string> {
  return Object.fromEntries((configs[tag]!.config?.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

function assertOk(r: PodResult, what: string): void {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

describe('executor image contents', () => {
  test('both tags are in the layout, and :debug is :latest plus one layer', () => {
    const l = summary.tags.latest!;
    const d = summary.tags.debug!;
    assert.match(l.digest, /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(l.digest, d.digest);
    assert.equal(d.layers, l.layers + 1);
    assert.deepEqual(configs.debug!.rootfs.diff_ids.slice(0, l.layers), configs.latest!.rootfs.diff_ids);
  });

  test('config: entrypoint under tini, Kaniko environment, workdir, version label', () => {
    for (const tag of ['latest', 'debug']) {
      const c = configs[tag]!.config!;
      assert.deepEqual(c.Entrypoint, ['/gantry/tini', '-s', '--', '/gantry/node', '/gantry/gantry.cjs', 'executor'], tag);
      assert.equal(c.Cmd, undefined, tag);
      assert.equal(c.WorkingDir, '/workspace', tag);
      assert.equal(c.User ?? '', '', tag);
      assert.equal(c.Labels?.['org.opencontainers.image.version'], pkgVersion, tag);
      const env = envOf(tag);
      assert.equal(env.DOCKER_CONFIG, '/kaniko/.docker/', tag);
      assert.equal(env.HOME, '/root', tag);
      assert.equal(env.USER, 'root', tag);
      assert.equal(env.SSL_CERT_FILE, '/kaniko/ssl/certs/ca-certificates.crt', tag);
      assert.ok(env.PATH!.split(':').includes('/kaniko'), `${tag} PATH ${env.PATH}`);
    }
    assert.ok(!envOf('latest').PATH!.includes('/busybox'));
    assert.ok(envOf('debug').PATH!.split(':').includes('/busybox'));
  });

  test(':latest holds only the assembled files, owned by root, with Kaniko modes', async () => {
    const tree = await imageTree(summary.layout, 'latest');
    const byPath = new Map(tree.map((e) => [e.path, e]));
    const expected = [
      '/', '/etc', '/etc/group', '/etc/nsswitch.conf', '/etc/passwd', '/etc/ssl', '/etc/ssl/certs', '/etc/ssl/certs/ca-certificates.crt',
      '/gantry', '/gantry/executor', '/gantry/gantry', '/gantry/gantry.cjs', '/gantry/lib', '/gantry/node', '/gantry/tini', '/gantry/warmer',
      '/kaniko', '/kaniko/.docker', '/kaniko/executor', '/kaniko/ssl', '/kaniko/ssl/certs', '/kaniko/ssl/certs/ca-certificates.crt',
      '/kaniko/warmer', '/root', '/tmp', '/workspace',
    ];
    const libs = tree.filter((e) => e.path.startsWith('/gantry/lib/'));
    assert.deepEqual(tree.filter((e) => !e.path.startsWith('/gantry/lib/')).map((e) => e.path).sort(), expected.sort());
    assert.ok(libs.some((e) => /^\/gantry\/lib\/ld-linux[^/]*\.so\.\d+$/.test(e.path)), 'the ELF interpreter');
    assert.ok(libs.some((e) => e.path === '/gantry/lib/libc.so.6'));
    for (const e of libs) assert.match(e.path, /^\/gantry\/lib\/(ld-linux[^/]*|lib[^/]+\.so(\.\d+)*)$/);
    for (const e of tree) assert.deepEqual([e.uid, e.gid], [0, 0], e.path);
    const mode = (p: string) => byPath.get(p)!.mode;
    assert.equal(mode('/tmp'), 0o1777);
    assert.equal(mode('/kaniko'), 0o777);
    assert.equal(mode('/kaniko/.docker'), 0o777);
    assert.equal(mode('/root'), 0o700);
    assert.equal(byPath.get('/kaniko/executor')!.linkTarget, '/gantry/executor');
    assert.equal(byPath.get('/gantry/executor')!.linkTarget, 'gantry');
    assert.equal(byPath.get('/kaniko/warmer')!.linkTarget, '/gantry/warmer');
    assert.equal(byPath.get('/gantry/warmer')!.linkTarget, 'gantry');
    const passwd = await readFile(join(latest.rootfs, 'etc/passwd'), 'utf8');
    assert.match(passwd, /^root:x:0:0:/m);
    assert.match(passwd, /^nobody:x:65534:65534:/m);
  });

  test('size: node and its libraries dominate, the compressed image stays small', async () => {
    const tree = await imageTree(summary.layout, 'latest');
    const total = tree.reduce((n, e) => n + e.size, 0);
    const node = tree.filter((e) => e.path === '/gantry/node' || e.path.startsWith('/gantry/lib/')).reduce((n, e) => n + e.size, 0);
    assert.ok(node / total > 0.8, `node and its libraries are ${node} of ${total} bytes`);
    assert.ok(summary.tags.latest!.size < 64 * 1048576, `compressed :latest is ${summary.tags.latest!.size} bytes`);
    assert.ok(summary.tags.debug!.size - summary.tags.latest!.size < 4 * 1048576, 'busybox adds a few MiB at most');
  });

  test(':debug adds only busybox, its applets and /bin/sh', async () => {
    const base = new Set((await imageTree(summary.layout, 'latest')).map((e) => e.path));
    const added: TreeEntry[] = (await imageTree(summary.layout, 'debug')).filter((e) => !base.has(e.path));
    const outside = added.filter((e) => e.path !== '/bin' && e.path !== '/bin/sh' && e.path !== '/busybox' && !e.path.startsWith('/busybox/'));
    assert.deepEqual(outside, []);
    assert.equal(added.find((e) => e.path === '/bin/sh')?.linkTarget, '/busybox/sh');
    assert.ok(added.filter((e) => e.type === 'symlink' && e.linkTarget === 'busybox').length > 100, 'applet links');
  });
});

describe('executor image in a simulated pod', () => {
  test('the patchelf\'d node runs, forks and re-executes itself with no /lib in the image', async () => {
    const script = `const fs = require('fs'); const cp = require('child_process');
      console.log(JSON.stringify({ version: process.version, lib: fs.existsSync('/lib'), lib64: fs.existsSync('/lib64'), usr: fs.existsSync('/usr'),
        child: cp.execFileSync(process.execPath, ['-p', '6*7']).toString().trim() }));`;
    const r = await runInPod({ image: latest, command: ['/gantry/node', '-e', script] });
    assertOk(r, 'node -e');
    assert.deepEqual(JSON.parse(r.stdout), { version: process.version, lib: false, lib64: false, usr: false, child: '42' });
  });

  test('the entrypoint (tini -> node -> bundle) answers --help; the launchers answer version, /kaniko/warmer its help', async () => {
    const help = await runInPod({ image: latest, args: ['--help'] });
    assertOk(help, 'executor --help');
    assert.match(help.stdout, /^Usage: gantry executor/);
    assert.match(help.stdout, /--destination/);
    for (const command of [['/kaniko/executor', 'version'], ['/gantry/executor', 'version'], ['/gantry/gantry', 'version'], ['executor', 'version']]) {
      const r = await runInPod({ image: latest, command });
      assertOk(r, command.join(' '));
      assert.equal(r.stdout, `gantry ${pkgVersion}\n`, command.join(' '));
    }
    const warmer = await runInPod({ image: latest, command: ['/kaniko/warmer', '--help'] });
    assertOk(warmer, '/kaniko/warmer --help');
    assert.match(warmer.stdout, /^Usage: gantry warmer/);
  });

  test('the pod has Docker\'s default capabilities, no_new_privs, and cannot mount', async () => {
    const r = await runInPod({ image: debug, command: ['sh', '-c', 'grep -E "^(CapEff|CapBnd|NoNewPrivs):" /proc/self/status; mount -t tmpfs pod-test /tmp; echo "mount=$?"'] });
    assertOk(r, 'sh');
    assert.match(r.stdout, new RegExp(`^CapEff:\\s+${dockerDefaultCapMask()}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^CapBnd:\\s+${dockerDefaultCapMask()}$`, 'm'));
    assert.match(r.stdout, /^NoNewPrivs:\s+1$/m);
    assert.match(r.stdout, /^mount=[1-9]\d*$/m);
    assert.match(r.stderr, /permission denied|not permitted/i);
  });

  test('the pod sees its mounts and none of the host\'s files', async () => {
    const marker = join(work.path, 'host-only', 'marker');
    await mkdir(join(work.path, 'host-only'), { recursive: true });
    await writeFile(marker, 'host\n');
    const shared = join(work.path, 'shared');
    await mkdir(shared, { recursive: true });
    await writeFile(join(shared, 'in-pod'), 'visible\n');
    const probe = [marker, join(work.path, 'shared/in-pod'), repoRoot, '/usr/bin/node', '/.pod-oldroot'].map((p) => `test -e '${p}' && echo "seen ${p}"`).join('; ');
    const r = await runInPod({ image: debug, command: ['sh', '-c', `${probe}; cat /mnt/shared/in-pod; grep -c . /proc/mounts`], mounts: [{ host: shared, path: '/mnt/shared', readOnly: true }] });
    assertOk(r, 'sh');
    assert.doesNotMatch(r.stdout, /^seen /m);
    assert.match(r.stdout, /^visible$/m);
    assert.ok(Number(r.stdout.trim().split('\n').at(-1)) < 25, `few mounts in the pod:\n${r.stdout}`);
  });
});

describe('Kaniko recipes in a pod', () => {
  let plain: TestRegistry;
  let tls: TestRegistry;

  before(async () => {
    [plain, tls] = await Promise.all([startRegistry({ kind: 'plain' }), startRegistry({ kind: 'tls-htpasswd' })]);
    const base = await busyboxBase();
    await Promise.all([pushBase(base, plain, 'base/busybox:1'), pushBase(base, tls, 'base/busybox:1')]);
  });
  after(async () => {
    await plain?.stop();
    await tls?.stop();
  });

  async function context(reg: TestRegistry, name: string, greeting: string): Promise<string> {
    const dir = join(work.path, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'greeting.txt'), greeting);
    await writeFile(join(dir, 'Dockerfile'), `FROM ${reg.host}/base/busybox:1\nCOPY greeting.txt /greeting.txt\nCMD ["cat", "/greeting.txt"]\n`);
    return dir;
  }

  async function pull(reg: TestRegistry, ref: string, name: string): Promise<string> {
    const layout = join(work.path, name);
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work.path, REGISTRY_AUTH_FILE: join(work.path, 'no-auth.json') };
    await run('skopeo', ['copy', '--quiet', '--insecure-policy', '--retry-times=0', ...skopeoRegistryFlags(reg, 'src'), `docker://${reg.host}/${ref}`, `oci:${layout}:pulled`], { check: true, env });
    return layout;
  }

  test('/kaniko/executor --context dir:///workspace pushes to an insecure registry; the image runs under runc', async () => {
    const ctx = await context(plain, 'ctx-plain', 'hello from the pod\n');
    const mounts: PodMount[] = [{ host: ctx, path: '/workspace', readOnly: true }];
    // `command: ["/kaniko/executor"]` as pod specs have it: the launcher is PID 1 and starts tini.
    const r = await runInPod({
      image: latest,
      command: ['/kaniko/executor', '--context', 'dir:///workspace', '--dockerfile', '/workspace/Dockerfile', '--destination', `${plain.host}/app:1`, '--insecure-registry', plain.host],
      mounts,
      network: 'host',
    });
    assertOk(r, 'executor');

    const layout = await pull(plain, 'app:1', 'pulled-plain');
    const bundle = join(work.path, 'runc-bundle');
    await run('umoci', ['unpack', '--image', `${layout}:pulled`, bundle], { check: true });
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { terminal: boolean; args: string[] } };
    assert.deepEqual(spec.process.args, ['cat', '/greeting.txt']);
    spec.process.terminal = false;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    const out = await run('runc', ['--root', join(work.path, 'runc-state'), 'run', '--bundle', bundle, `gantry-image-test-${process.pid}`], { timeoutMs: 60_000 });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, 'hello from the pod\n');
  });

  test('TLS + htpasswd registry: credentials from /kaniko/.docker/config.json, CA from --registry-certificate', async () => {
    const ctx = await context(tls, 'ctx-tls', 'hello over TLS\n');
    const docker = join(work.path, 'docker-config');
    await mkdir(docker, { recursive: true });
    const auth = Buffer.from(`${tls.username}:${tls.password}`).toString('base64');
    await writeFile(join(docker, 'config.json'), JSON.stringify({ auths: { [tls.host]: { auth } } }));
    const r = await runInPod({
      image: debug,
      command: ['/busybox/sh', '-c', '/kaniko/executor "$@"', 'sh', '--context', 'dir:///workspace', '--dockerfile', '/workspace/Dockerfile', '--destination', `${tls.host}/app:tls`, '--registry-certificate', `${tls.host}=/certs/ca.crt`],
      mounts: [
        { host: ctx, path: '/workspace', readOnly: true },
        { host: docker, path: '/kaniko/.docker', readOnly: true },
        { host: tls.caFile!, path: '/certs/ca.crt', readOnly: true },
      ],
      network: 'host',
    });
    assertOk(r, 'executor over TLS');

    const layout = await pull(tls, 'app:tls', 'pulled-tls');
    const tree = await imageTree(layout, 'pulled');
    const greeting = tree.find((e) => e.path === '/greeting.txt');
    assert.ok(greeting, 'the COPY layer was pushed');
    assert.equal(greeting.size, 'hello over TLS\n'.length);
    assert.ok(tree.some((e) => e.path === '/bin/busybox' || e.path === '/bin/sh'), 'the base layers were pushed');
  });

  test('without credentials the push is refused and the executor says so', async () => {
    const ctx = await context(tls, 'ctx-noauth', 'nobody\n');
    const r = await runInPod({
      image: latest,
      args: ['--context', 'dir:///workspace', '--destination', `${tls.host}/app:denied`, '--registry-certificate', `${tls.host}=/certs/ca.crt`],
      mounts: [
        { host: ctx, path: '/workspace', readOnly: true },
        { host: tls.caFile!, path: '/certs/ca.crt', readOnly: true },
      ],
    });
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /\b401\b/);
    // The hint names the config file the image's DOCKER_CONFIG points at.
    assert.match(r.stderr, /\/kaniko\/\.docker/);
  });
});
