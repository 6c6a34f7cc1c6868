/**
 * The seed pipeline's Kaniko command line, run as its CI job runs it: /kaniko/executor in the
 * executor image's simulated pod, a git:// context fetched over plain HTTP (GIT_PULL_METHOD=http)
 * from a local git server, a TLS + htpasswd registry reached with the CA given by
 * --registry-certificate and credentials from /kaniko/.docker/config.json, and the layer cache
 * on. Everything is read back with skopeo, an independent client.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { busyboxBase, pushBase } from '../../src/testing/bases.js';
import { run } from '../../src/testing/exec.js';
import { startGitServer, type GitServer } from '../../src/testing/git-server.js';
import { repoRoot } from '../../src/testing/paths.js';
import { runInPod, unpackImage, type PodResult, type UnpackedImage } from '../../src/testing/pod.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoInspectRaw, skopeoRegistryFlags } from '../../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';

const SOURCE = 'https://github.com/owner/app';

let work: TempDir;
let latest: UnpackedImage;
let reg: TestRegistry;
let git: GitServer;
let sha: string;
let dockerConfig: string;

/** A one-commit repository `repo.git` under `root` whose Dockerfile builds on the registry's busybox. */
async function makeAppRepo(root: string, registryHost: string): Promise<string> {
  const tree = join(root, 'app.work');
  await mkdir(tree, { recursive: true });
  await writeFile(join(tree, 'Dockerfile'), `FROM ${registryHost}/base/busybox:1\nCOPY app.txt /app/app.txt\nRUN wc -c /app/app.txt > /app/size.txt\n`);
  await writeFile(join(tree, 'app.txt'), 'seed pipeline\n');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: root,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'Test',
    GIT_AUTHOR_EMAIL: 'test@example.com',
    GIT_COMMITTER_NAME: 'Test',
    GIT_COMMITTER_EMAIL: 'test@example.com',
    GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
    GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
  };
  const g = async (...args: string[]) => (await run('git', args, { cwd: tree, env, check: true })).stdout.trim();
  await g('init', '-q', '-b', 'main');
  await g('add', '-A');
  await g('commit', '-q', '-m', 'app');
  const head = await g('rev-parse', 'HEAD');
  await run('git', ['clone', '-q', '--bare', tree, join(root, 'repo.git')], { env, check: true });
  return head;
}

before(async () => {
  work = await tempDir('seed-pipeline');
  const layout = join(work.path, 'layout');
  await run(process.execPath, [join(repoRoot, 'scripts/image/build.mjs'), '--out', layout, '--summary', join(work.path, 'summary.json')], { check: true, timeoutMs: 300_000 });
  latest = await unpackImage(layout, 'latest');
  reg = await startRegistry({ kind: 'tls-htpasswd' });
  await pushBase(await busyboxBase(), reg, 'base/busybox:1');
  const gitRoot = join(work.path, 'git');
  await mkdir(gitRoot, { recursive: true });
  sha = await makeAppRepo(gitRoot, reg.host);
  git = await startGitServer({ root: gitRoot });
  // What Kaniko recipes write before the executor step.
  dockerConfig = join(work.path, 'docker-config');
  await mkdir(dockerConfig, { recursive: true });
  const auth = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
  await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
});

after(async () => {
  await git?.close();
  await reg?.stop();
  await latest?.cleanup();
  await work?.cleanup();
});

/** The seed command line, verbatim but for the hosts. */
async function seedBuild(workspace: string): Promise<PodResult> {
  return runInPod({
    image: latest,
    command: [
      '/kaniko/executor',
      '--dockerfile', 'Dockerfile',
      '--context', `git://127.0.0.1:${git.port}/repo.git#refs/heads/main#${sha}`,
      '--destination', `${reg.host}/owner/app:latest`,
      '--cache=true',
      '--cache-copy-layers=true',
      '--cache-ttl=24h',
      '--push-retry', '5',
      '--digest-file', '/workspace/digest',
      '--label', `org.opencontainers.image.source=${SOURCE}`,
      '--registry-certificate', `${reg.host}=/certs/ca.crt`,
    ],
    env: { GIT_PULL_METHOD: 'http' },
    mounts: [
      { host: workspace, path: '/workspace' },
      { host: dockerConfig, path: '/kaniko/.docker', readOnly: true },
      { host: reg.caFile!, path: '/certs/ca.crt', readOnly: true },
    ],
    network: 'host',
    timeoutMs: 240_000,
  });
}

interface Pushed {
  digest: string;
  layers: string[];
  config: { config?: { Labels?: Record<string, string> } };
}

async function pushed(): Promise<Pushed> {
  const raw = await skopeoInspectRaw(reg, 'owner/app:latest');
  const manifest = JSON.parse(raw.toString('utf8')) as { layers: Array<{ digest: string }> };
  const home = join(work.path, 'skopeo-home');
  await mkdir(home, { recursive: true });
  const cfg = await run('skopeo', ['inspect', '--config', '--raw', '--retry-times=0', ...skopeoRegistryFlags(reg, 'none'), `docker://${reg.host}/owner/app:latest`], {
    check: true,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, REGISTRY_AUTH_FILE: join(home, 'auth.json') },
  });
  return {
    digest: `sha256:${createHash('sha256').update(raw).digest('hex')}`,
    layers: manifest.layers.map((l) => l.digest),
    config: JSON.parse(cfg.stdout) as Pushed['config'],
  };
}

function assertOk(r: PodResult, what: string): void {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

describe('the seed pipeline\'s executor command in a pod', () => {
  test('git:// context over HTTP, TLS + htpasswd registry, digest file, label; a second run is all cache hits', async () => {
    const ws1 = join(work.path, 'workspace-1');
    await mkdir(ws1, { recursive: true });
    const first = await seedBuild(ws1);
    assertOk(first, 'first run');
    const log1 = first.stdout + first.stderr;
    assert.match(log1, /RUN sandbox: inplace/);
    // COPY (--cache-copy-layers) and RUN: both looked up, both missed, both stored.
    assert.match(log1, /layer cache [^\n]*: 0 hits, 2 layers stored/, log1);
    assert.ok(git.requests.some((r) => r.method === 'POST' && r.path.endsWith('/repo.git/git-upload-pack') && r.status === 200), 'the context was fetched from the git server over HTTP');

    const one = await pushed();
    assert.equal((await readFile(join(ws1, 'digest'), 'utf8')).trim(), one.digest);
    assert.equal(one.config.config?.Labels?.['org.opencontainers.image.source'], SOURCE);

    const ws2 = join(work.path, 'workspace-2');
    await mkdir(ws2, { recursive: true });
    const second = await seedBuild(ws2);
    assertOk(second, 'second run');
    const log2 = second.stdout + second.stderr;
    assert.match(log2, /layer cache [^\n]*: 2 hits, 0 layers stored/, log2);

    const two = await pushed();
    assert.equal((await readFile(join(ws2, 'digest'), 'utf8')).trim(), two.digest);
    assert.deepEqual(two.layers, one.layers, 'the warm run pushes the same layers');
    assert.equal(two.config.config?.Labels?.['org.opencontainers.image.source'], SOURCE);
  });
});
