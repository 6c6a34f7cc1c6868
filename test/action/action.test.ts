/**
 * The Action end to end in a simulated runner: INPUT_* variables, GITHUB_OUTPUT,
 * GITHUB_STEP_SUMMARY and the usual GITHUB_* context, pushing a COPY-only image to a real
 * TLS + htpasswd registry; read back with skopeo. run() runs in-process, and the esbuild bundle
 * (what action.yml points at) once as `node index.cjs`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '../../src/testing/paths.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { authsFor, readOutputs, runInProcess, skopeoImage } from './support.js';

const SHA = '0123456789abcdef0123456789abcdef01234567';
const TOKEN = 'ghs_fakeWorkflowToken0123456789';
const DOCKERFILE = 'FROM scratch AS files\nCOPY hello.txt /hello.txt\nFROM scratch\nCOPY --from=files /hello.txt /greeting.txt\nCOPY data/ /data/\nENV GREETING=hello\n';

let reg: TestRegistry;
let tmp: TempDir;
let workspace: string;
let loggedIn: string;
let empty: string;
let run_ = 0;

before(async () => {
  reg = await startRegistry({ kind: 'tls-htpasswd' });
  tmp = await tempDir('action-e2e');
  workspace = join(tmp.path, 'workspace');
  await mkdir(join(workspace, 'data'), { recursive: true });
  await writeFile(join(workspace, 'Dockerfile'), DOCKERFILE);
  await writeFile(join(workspace, 'hello.txt'), 'hello from the action\n');
  await writeFile(join(workspace, 'data', 'x.json'), '{"x":1}\n');
  // What docker/login-action leaves behind.
  loggedIn = join(tmp.path, 'docker-login');
  await mkdir(loggedIn);
  await writeFile(join(loggedIn, 'config.json'), authsFor(reg));
  empty = join(tmp.path, 'docker-empty');
  await mkdir(empty);
});

after(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

/** A fresh runner environment for one step: its own output, summary and temp files. */
async function runnerEnv(inputs: Record<string, string>, extra: NodeJS.ProcessEnv = {}): Promise<{ env: NodeJS.ProcessEnv; output: string; summary: string }> {
  const dir = join(tmp.path, `step-${++run_}`);
  await mkdir(join(dir, 'temp'), { recursive: true });
  const output = join(dir, 'output');
  const summary = join(dir, 'summary.md');
  await writeFile(output, '');
  await writeFile(summary, '');
  const env: NodeJS.ProcessEnv = {
    GITHUB_OUTPUT: output,
    GITHUB_STEP_SUMMARY: summary,
    GITHUB_REPOSITORY: 'Octo-Org/Hello-App',
    GITHUB_SHA: SHA,
    GITHUB_REF: 'refs/heads/main',
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_ACTOR: 'octocat',
    GITHUB_TOKEN: TOKEN,
    GITHUB_WORKSPACE: workspace,
    RUNNER_TEMP: join(dir, 'temp'),
    DOCKER_CONFIG: loggedIn,
    'INPUT_REGISTRY-CERTIFICATE': `${reg.host}=${reg.caFile}`,
    ...extra,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  return { env, output, summary };
}

describe('the Action in a simulated runner', () => {
  it('pushes with docker/login-action credentials; outputs, labels, summary and masks are right', async () => {
    const tag = `${reg.host}/octo/app:v1`;
    const started = Date.now();
    const { env, output, summary } = await runnerEnv({ context: '.', tags: `${tag}\n${reg.host}/octo/app:latest`, push: 'true', labels: 'team=platform' });
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 0, r.stdout);

    const seen = await skopeoImage(reg, 'octo/app:v1');
    const outputs = await readOutputs(output);
    assert.equal(outputs.digest, seen.digest);
    assert.equal(outputs.imageid, seen.configDigest);
    const meta = JSON.parse(outputs.metadata!) as Record<string, string>;
    assert.equal(meta['containerimage.digest'], seen.digest);
    assert.equal(meta['containerimage.config.digest'], seen.configDigest);
    assert.equal(meta['image.name'], `${tag},${reg.host}/octo/app:latest`);
    assert.equal((await skopeoImage(reg, 'octo/app:latest')).digest, seen.digest);

    assert.equal(seen.labels['org.opencontainers.image.source'], 'https://github.com/Octo-Org/Hello-App');
    assert.equal(seen.labels['org.opencontainers.image.revision'], SHA);
    assert.equal(seen.labels.team, 'platform');
    const created = Date.parse(seen.labels['org.opencontainers.image.created']!);
    assert.ok(created >= Math.floor(started / 1000) * 1000 && created <= Date.now(), `created label ${seen.labels['org.opencontainers.image.created']}`);
    assert.equal(seen.layers, 2);

    const md = await readFile(summary, 'utf8');
    assert.match(md, /## gantry build/);
    assert.ok(md.includes(`| digest | \`${seen.digest}\` |`), md);
    assert.ok(md.includes(`\`${tag}\``), md);
    assert.match(md, /\| layers \| 2 \|/);
    assert.match(md, /\| size \| \d+(\.\d)? (B|KiB) \|/);
    assert.match(md, /\| files \| `COPY hello.txt \/hello.txt` \| \d+\.\d\d s \| `sha256:/);
    assert.match(md, /\| stage-1 \| `ENV GREETING=hello` \| \d+\.\d\d s \|  \|/);

    assert.ok(r.stdout.includes(`::add-mask::${TOKEN}`), 'the workflow token is masked');
    assert.match(r.stdout, /::group::stage files\n/);
    assert.match(r.stdout, /::endgroup::/);
  });

  it('cache-to/cache-from type=local: a warm second run reuses every layer and pushes the same image', async () => {
    const inputs = { context: '.', tags: `${reg.host}/octo/cached:1`, push: 'true', 'cache-from': 'type=local,src=.layer-cache', 'cache-to': 'type=local,dest=.layer-cache' };
    // A fixed creation time: the two runs must produce the same image.
    const epoch = { SOURCE_DATE_EPOCH: '1700000000' };
    const cold = await runnerEnv(inputs, epoch);
    const first = await runInProcess(cold.env);
    assert.equal(first.exitCode, 0, first.stdout);
    const stored = /layer cache [^\n]*: 0 hits, ([1-9]\d*) layers stored/.exec(first.stdout);
    assert.ok(stored, first.stdout);
    const warm = await runnerEnv(inputs, epoch);
    const second = await runInProcess(warm.env);
    assert.equal(second.exitCode, 0, second.stdout);
    assert.match(second.stdout, new RegExp(`layer cache [^\\n]*: ${stored[1]} hits, 0 layers stored`));
    assert.equal((await readOutputs(warm.output)).digest, (await readOutputs(cold.output)).digest);
    assert.equal((await readOutputs(warm.output)).digest, (await skopeoImage(reg, 'octo/cached:1')).digest);
  });

  it('username/password inputs log in through a temporary config and are masked', async () => {
    const password = reg.password!;
    const { env, output } = await runnerEnv(
      { context: '.', tags: `${reg.host}/octo/creds:1`, push: 'true', username: reg.username!, password, registry: reg.host },
      { DOCKER_CONFIG: empty },
    );
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 0, r.stdout);
    assert.equal((await readOutputs(output)).digest, (await skopeoImage(reg, 'octo/creds:1')).digest);
    assert.ok(r.stdout.includes(`::add-mask::${password}`));
    assert.ok(r.stdout.includes(`::add-mask::${Buffer.from(`${reg.username}:${password}`).toString('base64')}`));
    assert.ok(!r.stdout.replace(/::add-mask::.*\n/g, '').includes(password), 'the password appears only in mask commands');
  });

  it('wrong credentials fail the step with the registry\'s answer and a hint', async () => {
    const { env, output } = await runnerEnv(
      { context: '.', tags: `${reg.host}/octo/denied:1`, push: 'true', username: 'intruder', password: 'not-the-password', registry: reg.host },
      { DOCKER_CONFIG: empty },
    );
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 1);
    assert.match(r.stdout, /::error::.*octo\/denied.*%0Ahint: /);
    assert.deepEqual(await readOutputs(output), {});
  });

  const failures: Array<[string, Record<string, string>, RegExp]> = [
    ['cache-to', { 'cache-to': 'type=gha,mode=max' }, /::error::input "cache-to" is not supported/],
    ['ssh', { ssh: 'default' }, /::error::input "ssh" is not supported/],
    ['an unknown sandbox', { sandbox: 'docker' }, /::error::input "sandbox" must be one of auto, ns, rootless, inplace, got "docker"/],
    ['platforms', { platforms: 'linux/amd64\nlinux/arm64' }, /::error::input "platforms" is not supported/],
    ['a RUN that fails (scratch has no shell)', { file: 'run.Dockerfile' }, /::error::.*Dockerfile:2: RUN echo hi: exit code 127/],
  ];
  for (const [name, inputs, re] of failures) {
    it(`fails clearly before building: ${name}`, async () => {
      await writeFile(join(workspace, 'run.Dockerfile'), 'FROM scratch\nRUN echo hi\n');
      const { env, output, summary } = await runnerEnv({ context: '.', tags: `${reg.host}/octo/never:1`, push: 'true', ...inputs });
      const r = await runInProcess(env);
      assert.equal(r.exitCode, 1);
      assert.match(r.stdout, re);
      assert.deepEqual(await readOutputs(output), {});
      assert.equal(await readFile(summary, 'utf8'), '');
    });
  }

  it('without push, the image lands in RUNNER_TEMP and the outputs are still set', async () => {
    const { env, output } = await runnerEnv({ context: '.', tags: `${reg.host}/octo/local:1` });
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 0, r.stdout);
    const outputs = await readOutputs(output);
    assert.match(outputs.digest!, /^sha256:[0-9a-f]{64}$/);
    const index = JSON.parse(await readFile(join(env.RUNNER_TEMP!, 'gantry-image', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]!.digest, outputs.digest);
  });
});

describe('the bundled Action (dist/index.cjs)', () => {
  it('runs as `node index.cjs` and pushes', async () => {
    const bundleDir = join(tmp.path, 'bundle');
    const bundle = join(bundleDir, 'index.cjs');
    // The script behind `npm run bundle:action`, pointed at a temp file.
    const built = await exec(process.execPath, [join(repoRoot, 'scripts', 'bundle-action.mjs'), bundle], process.env, repoRoot);
    assert.equal(built.code, 0, built.stderr);

    const { env, output, summary } = await runnerEnv({ context: '.', tags: `${reg.host}/octo/bundled:1`, push: 'true' });
    const r = await exec(process.execPath, [bundle], { PATH: process.env.PATH, ...env }, workspace);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const seen = await skopeoImage(reg, 'octo/bundled:1');
    assert.equal((await readOutputs(output)).digest, seen.digest);
    assert.match(await readFile(summary, 'utf8'), /## gantry build/);
    assert.ok(r.stdout.includes(`::add-mask::${TOKEN}`));
  });
});

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
