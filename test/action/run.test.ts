/**
 * The Action with RUN, end to end against a real registry and a busybox base: secrets reach
 * RUN --mount=type=secret but neither the log (only `::add-mask::`) nor any pushed blob;
 * `network: none` and `add-hosts` shape RUN's network; as root the step builds in-process; the
 * bundle started by an unprivileged user (with a subordinate id range) re-executes itself in a
 * user namespace and says so.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { busyboxBase, pushBase } from '../../src/testing/bases.js';
import { run as exec } from '../../src/testing/exec.js';
import { repoRoot } from '../../src/testing/paths.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { readOutputs, runInProcess } from './support.js';
import { grantSubIdRange, revokeSubIdRange } from '../../src/testing/subids.js';

const SECRET = `gantry-secret-${randomBytes(12).toString('hex')}`;
const FILE_SECRET = `file-secret-${randomBytes(12).toString('hex')}`;
const ENV_SECRET = `env-secret-${randomBytes(12).toString('hex')}`;
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

let reg: TestRegistry;
let tmp: TempDir;
let baseRef: string;
let step = 0;

before(async () => {
  reg = await startRegistry({ kind: 'plain' });
  tmp = await tempDir('action-run');
  baseRef = await pushBase(await busyboxBase(), reg, 'base/busybox:1');
});

after(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** A runner's environment for one step in `dir`: workspace with the Dockerfile, outputs, temp. */
async function stepEnv(dir: string, dockerfile: string, inputs: Record<string, string>, extra: NodeJS.ProcessEnv = {}): Promise<{ env: NodeJS.ProcessEnv; output: string; workspace: string }> {
  const workspace = join(dir, 'workspace');
  await mkdir(workspace, { recursive: true });
  await mkdir(join(dir, 'temp'));
  await mkdir(join(dir, 'docker'));
  await writeFile(join(workspace, 'Dockerfile'), dockerfile);
  const output = join(dir, 'output');
  await writeFile(output, '');
  await writeFile(join(dir, 'summary.md'), '');
  const env: NodeJS.ProcessEnv = {
    GITHUB_OUTPUT: output,
    GITHUB_STEP_SUMMARY: join(dir, 'summary.md'),
    GITHUB_REPOSITORY: 'octo/run',
    GITHUB_SHA: 'a'.repeat(40),
    GITHUB_REF: 'refs/heads/main',
    GITHUB_WORKSPACE: workspace,
    RUNNER_TEMP: join(dir, 'temp'),
    DOCKER_CONFIG: join(dir, 'docker'),
    'INPUT_INSECURE-REGISTRY': reg.host,
    INPUT_CONTEXT: '.',
    INPUT_PUSH: 'true',
    ...extra,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  return { env, output, workspace };
}

/** A blob as the registry stores it. */
function blob(digest: string): Buffer {
  const hex = digest.replace(/^sha256:/, '');
  return readFileSync(join(reg.dataDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'));
}

/** Every blob in the registry, layers decompressed: what a leak would be found in. */
function allBlobs(): Buffer[] {
  const root = join(reg.dataDir, 'docker', 'registry', 'v2', 'blobs', 'sha256');
  const out: Buffer[] = [];
  for (const prefix of readdirSync(root)) {
    for (const hex of readdirSync(join(root, prefix))) {
      const data = readFileSync(join(root, prefix, hex, 'data'));
      out.push(data);
      if (data[0] === 0x1f && data[1] === 0x8b) out.push(gunzipSync(data));
    }
  }
  return out;
}

/** Regular files of the pushed image, later layers over earlier ones, with their owners. */
async function imageFiles(digest: string): Promise<Map<string, { data: Buffer; uid: number }>> {
  const manifest = JSON.parse(blob(digest).toString('utf8')) as { layers: Array<{ digest: string }> };
  const files = new Map<string, { data: Buffer; uid: number }>();
  for (const layer of manifest.layers) {
    const ex = extract();
    const done = (async () => {
      for await (const entry of ex) {
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer);
        if (entry.header.type === 'file') files.set(entry.header.name.replace(/^\.?\//, ''), { data: Buffer.concat(chunks), uid: entry.header.uid ?? -1 });
      }
    })();
    ex.end(gunzipSync(blob(layer.digest)));
    await done;
  }
  return files;
}

function text(files: Map<string, { data: Buffer }>, name: string): string {
  const f = files.get(name);
  assert.ok(f, `${name} is in the image (have: ${[...files.keys()].filter((k) => !k.startsWith('bin/')).join(', ')})`);
  return f.data.toString('utf8');
}

describe('the Action builds RUN', () => {
  it('as root, in-process: secrets reach RUN but not the log or the image; network none; add-hosts', async () => {
    const dir = join(tmp.path, `step-${++step}`);
    const secretFile = join(tmp.path, 'secret-file.txt');
    await writeFile(secretFile, FILE_SECRET);
    const dockerfile = [
      `FROM ${baseRef}`,
      'RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /token.sha',
      'RUN --mount=type=secret,id=file sha256sum /run/secrets/file | cut -c1-64 > /file.sha',
      'RUN --mount=type=secret,id=fromenv sha256sum /run/secrets/fromenv | cut -c1-64 > /env.sha',
      'RUN cat /proc/net/dev > /netdev && cat /etc/hosts > /hosts.txt',
      '',
    ].join('\n');
    const tag = `${reg.host}/octo/run:secrets`;
    const { env, output } = await stepEnv(dir, dockerfile, {
      tags: tag,
      secrets: `token=${SECRET}`,
      'secret-files': `file=${secretFile}`,
      'secret-envs': 'fromenv=MY_BUILD_SECRET',
      network: 'none',
      'add-hosts': 'gantry-test-host:10.11.12.13',
    }, { MY_BUILD_SECRET: ENV_SECRET });
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 0, r.stdout);
    assert.match(r.stdout, /gantry runs in this process: running as root/);
    assert.match(r.stdout, /RUN sandbox: /);
    assert.ok(r.stdout.includes(`::add-mask::${SECRET}\n`), 'the secrets value is masked');
    assert.ok(!r.stdout.replace(/^::add-mask::.*\n/gm, '').includes(SECRET), 'the secret appears only in the mask command');

    const digest = (await readOutputs(output)).digest!;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    const files = await imageFiles(digest);
    assert.equal(text(files, 'token.sha').trim(), sha256(SECRET));
    assert.equal(text(files, 'file.sha').trim(), sha256(FILE_SECRET));
    assert.equal(text(files, 'env.sha').trim(), sha256(ENV_SECRET));
    const ifaces = text(files, 'netdev').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter((n) => n !== '');
    assert.deepEqual(ifaces, ['lo'], 'network: none leaves only loopback');
    assert.match(text(files, 'hosts.txt'), /^10\.11\.12\.13\s+gantry-test-host$/m);
    assert.ok(!files.has('run/secrets/token'), 'the secret mount leaves nothing behind');
    for (const b of allBlobs()) {
      for (const s of [SECRET, FILE_SECRET, ENV_SECRET]) assert.ok(!b.includes(s), 'no pushed blob holds a secret value');
    }
  });

  it('a RUN gets the host network without `network`', async () => {
    const dir = join(tmp.path, `step-${++step}`);
    const { env, output } = await stepEnv(dir, `FROM ${baseRef}\nRUN cat /proc/net/dev > /netdev\n`, { tags: `${reg.host}/octo/run:net` });
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 0, r.stdout);
    const files = await imageFiles((await readOutputs(output)).digest!);
    const ifaces = text(files, 'netdev').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter((n) => n !== '');
    const host = readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter((n) => n !== '');
    assert.deepEqual(ifaces.sort(), host.sort());
  });

  it('a secret the build was not given fails the RUN that requires it', async () => {
    const dir = join(tmp.path, `step-${++step}`);
    const { env, output } = await stepEnv(dir, `FROM ${baseRef}\nRUN --mount=type=secret,id=missing,required=true cat /run/secrets/missing\n`, { tags: `${reg.host}/octo/run:missing` });
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 1);
    assert.match(r.stdout, /::error::.*secret missing is required.*%0Ahint: give it to the step: `secrets: missing=VALUE`/);
    assert.deepEqual(await readOutputs(output), {});
  });
});

describe('the bundle run by an unprivileged user', () => {
  let user: { name: string; uid: number; gid: number; home: string } | undefined;
  let bundle: string;
  let sudoers: string | undefined;

  before(async () => {
    const name = `gantryact-${randomBytes(4).toString('hex')}`;
    // -K SUB_*_COUNT=0: useradd would otherwise allocate ranges itself on some systems.
    await exec('useradd', ['-m', '-K', 'SUB_UID_COUNT=0', '-K', 'SUB_GID_COUNT=0', name], { check: true });
    const uid = Number((await exec('id', ['-u', name], { check: true })).stdout.trim());
    const gid = Number((await exec('id', ['-g', name], { check: true })).stdout.trim());
    user = { name, uid, gid, home: `/home/${name}` };
    const base = grantSubIdRange(name);
    bundle = join(user.home, 'action', 'index.cjs');
    const built = await exec(process.execPath, [join(repoRoot, 'scripts', 'bundle-action.mjs'), bundle], { cwd: repoRoot });
    assert.equal(built.code, 0, built.stderr);
  });

  after(async () => {
    if (sudoers) rmSync(sudoers, { force: true });
    if (!user) return;
    revokeSubIdRange(user.name);
    await exec('pkill', ['-KILL', '-u', String(user.uid)]);
    await exec('userdel', ['-r', '-f', user.name]);
  });

  /** Runs the bundle as the user, as the runner starts it, in a fresh step directory under its home. */
  async function runAsUser(stepName: string, dockerfile: string, inputs: Record<string, string>) {
    const u = user!;
    const dir = join(u.home, stepName);
    const step = await stepEnv(dir, dockerfile, inputs, { PATH: SYSTEM_PATH, HOME: u.home, LC_ALL: 'C' });
    await exec('chown', ['-R', `${u.uid}:${u.gid}`, u.home], { check: true });
    const r = await exec('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', '--', process.execPath, bundle], { cwd: step.workspace, env: step.env, timeoutMs: 180_000 });
    return { ...step, dir, r };
  }

  it('re-executes itself in a user namespace (rootless) and builds RUN with real ownership', async () => {
    const dockerfile = `FROM ${baseRef}\nRUN --mount=type=secret,id=token id -u > /uid && touch /owned && chown 1234:1234 /owned && sha256sum /run/secrets/token | cut -c1-64 > /token.sha\n`;
    const { r, output, dir } = await runAsUser('rootless', dockerfile, { tags: `${reg.host}/octo/run:rootless`, secrets: `token=${SECRET}` });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /gantry runs rootless, re-executed in a user namespace: not root, and the rootless sandbox works here \(user namespaces work, full subordinate id range/);
    assert.match(r.stdout, /gantry runs in this process: re-executed by the step \(rootless\)/);
    assert.match(r.stdout, /RUN sandbox: rootless \(inside a user namespace, full subordinate id range\)/);
    assert.ok(!r.stdout.replace(/^::add-mask::.*\n/gm, '').includes(SECRET), 'the secret appears only in mask commands');

    const digest = (await readOutputs(output)).digest!;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    const files = await imageFiles(digest);
    assert.equal(text(files, 'uid').trim(), '0');
    assert.equal(files.get('owned')?.uid, 1234, 'a chown to another id survives: the whole subordinate range is mapped');
    assert.equal(text(files, 'token.sha').trim(), sha256(SECRET));
    assert.deepEqual(await readdir(join(dir, 'temp')), [], 'the step cleans up after itself');
  });

  it('with sandbox: ns, re-executes itself under sudo and gives what it wrote back to the user', async () => {
    const u = user!;
    sudoers = `/etc/sudoers.d/${u.name}`;
    writeFileSync(sudoers, `${u.name} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
    const dockerfile = `FROM ${baseRef}\nRUN --mount=type=cache,target=/cache id -u > /uid && touch /cache/x\n`;
    const { r, output, workspace, env } = await runAsUser('sudo', dockerfile, { sandbox: 'ns', push: 'false', outputs: 'type=oci,dest=out,tar=false', secrets: `token=${SECRET}` });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /gantry runs under sudo, with the ns sandbox: not root, sandbox: ns needs root, passwordless sudo works/);
    assert.match(r.stdout, /gantry runs in this process: re-executed by the step \(sudo\)/);
    assert.match(r.stdout, /RUN sandbox: ns /);
    assert.ok(r.stdout.includes(`::add-mask::${SECRET}\n`));

    const digest = (await readOutputs(output)).digest!;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    const layout = join(workspace, 'out');
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]!.digest, digest);
    // The cache directory's contents keep the owners RUN gave them (a later RUN must see the same).
    const cache = join(u.home, '.cache', 'gantry', 'run-cache');
    const owners = (await exec('find', [layout, output, env.GITHUB_STEP_SUMMARY!, join(u.home, '.cache'), join(u.home, '.cache', 'gantry'), cache, '(', '-path', `${cache}/*`, '-prune', ')', '-o', '!', '-user', String(u.uid), '-printf', '%p %u\n'], { check: true })).stdout;
    assert.equal(owners, '', 'everything the step left for later steps belongs to the runner user');
    assert.equal((await exec('find', [cache, '-name', 'x', '-user', 'root'], { check: true })).stdout.trim().endsWith('/x'), true, 'the cache mount was used, as root');
  });
});
