/**
 * How the Action reads its inputs: build-push-action's list syntax, the mapping to BuildOptions
 * (labels, GHCR lower-casing, contexts, outputs), inputs gantry cannot honour yet, credentials.
 */
import assert from 'node:assert/strict';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { failureMessage, metadataJson } from '../../src/action/run.js';
import { inputEnvName, readInputs, rejectUnsupported } from '../../src/action/inputs.js';
import { parseList } from '../../src/action/list.js';
import { defaultGitContext, githubContext, lowerCaseGhcr, mapInputs, parseOutputs } from '../../src/action/options.js';
import { prepareCredentials } from '../../src/action/credentials.js';
import { summaryMarkdown } from '../../src/action/summary.js';
import type { BuildResult } from '../../src/build/index.js';
import { GantryError } from '../../src/util/errors.js';
import { repoRoot } from '../../src/testing/paths.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';

describe('list inputs read like docker/build-push-action', () => {
  const cases: Array<{ name: string; text: string; ignoreComma?: boolean; want: string[] }> = [
    { name: 'newlines', text: 'a\nb\n\nc\n', want: ['a', 'b', 'c'] },
    { name: 'commas split when commas are separators', text: 'a,b\nc', want: ['a', 'b', 'c'] },
    { name: 'commas kept for one-per-line inputs', text: 'KEY=a,b\nX=1', ignoreComma: true, want: ['KEY=a,b', 'X=1'] },
    { name: 'quoted field keeps its comma when commas are kept', text: '"KEY=a,b"\nX=1', ignoreComma: true, want: ['KEY=a,b', 'X=1'] },
    { name: 'quoted field is split again when commas separate', text: '"a,b"', want: ['a', 'b'] },
    { name: 'doubled quote inside a quoted field', text: '"K=say ""hi"""', ignoreComma: true, want: ['K=say "hi"'] },
    { name: 'quote inside an unquoted field is literal', text: 'K=a"b', ignoreComma: true, want: ['K=a"b'] },
    { name: 'quoted field spanning lines', text: '"K=line1\nline2"\nX=1', ignoreComma: true, want: ['K=line1\nline2', 'X=1'] },
    { name: 'whitespace trimmed, blank items dropped', text: '  a ,  , b \r\n   \n', want: ['a', 'b'] },
    { name: 'empty input', text: '', want: [] },
    { name: 'CRLF line ends', text: 'a\r\nb', want: ['a', 'b'] },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(parseList(c.text, { ignoreComma: c.ignoreComma ?? false }), c.want));
  }

  it('INPUT_ names: upper-cased, spaces to underscores, dashes kept', () => {
    assert.equal(inputEnvName('build-args'), 'INPUT_BUILD-ARGS');
    assert.equal(inputEnvName('my input'), 'INPUT_MY_INPUT');
  });

  it('booleans accept YAML core spellings only', () => {
    assert.equal(readInputs({ INPUT_PUSH: 'True' }).push, true);
    assert.equal(readInputs({ INPUT_PUSH: 'FALSE' }).push, false);
    assert.throws(() => readInputs({ INPUT_PUSH: 'yes' }), /input "push" must be true or false, got "yes"/);
  });
});

describe('unsupported inputs fail naming the input', () => {
  const cases: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
    ['ssh', { INPUT_SSH: 'default' }, /input "ssh" is not supported.*RUN option.*ssh/],
    ['shm-size', { 'INPUT_SHM-SIZE': '2g' }, /input "shm-size" is not supported.*RUN option/],
    ['ulimit', { INPUT_ULIMIT: 'nofile=1024:1024' }, /input "ulimit".*RUN option/],
    ['allow', { INPUT_ALLOW: 'network.host' }, /input "allow".*entitlements/],
    ['cache-from type=gha', { 'INPUT_CACHE-FROM': 'type=gha' }, /input "cache-from" is not supported.*GitHub's cache service \(type=gha\)/],
    ['cache-to type=gha', { 'INPUT_CACHE-TO': 'type=registry,ref=r/c\ntype=gha,mode=max' }, /input "cache-to".*"type=gha,mode=max".*type=gha/],
    ['annotations', { INPUT_ANNOTATIONS: 'index:org.opencontainers.image.description=x' }, /input "annotations"/],
    ['provenance', { INPUT_PROVENANCE: 'mode=max' }, /input "provenance" is not supported/],
    ['sbom', { INPUT_SBOM: 'true' }, /input "sbom"/],
    ['platforms (several)', { INPUT_PLATFORMS: 'linux/amd64,linux/arm64' }, /input "platforms".*one platform per build.*2/],
    ['load', { INPUT_LOAD: 'true' }, /input "load".*no Docker daemon/],
    ['build-contexts', { 'INPUT_BUILD-CONTEXTS': 'alpine=docker-image://alpine' }, /input "build-contexts"/],
    ['builder', { INPUT_BUILDER: 'mybuilder' }, /input "builder"/],
  ];
  for (const [name, env, re] of cases) {
    it(name, () => {
      const err = (() => {
        try {
          rejectUnsupported(readInputs(env));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(err instanceof GantryError, `${name} was accepted`);
      assert.equal(err.code, 'UNSUPPORTED');
      assert.match(err.message, re);
      assert.ok(err.hint, 'a hint says what to do');
    });
  }

  it('accepts what matches gantry already: provenance=false, the cache inputs, no-cache, one platform, the RUN inputs', () => {
    rejectUnsupported(readInputs({ INPUT_PROVENANCE: 'false', INPUT_CACHE: 'false', 'INPUT_NO-CACHE': 'true', INPUT_PLATFORMS: 'linux/arm64', INPUT_LOAD: 'false' }));
    rejectUnsupported(readInputs({ INPUT_CACHE: 'true', 'INPUT_CACHE-REPO': 'ghcr.io/o/cache', 'INPUT_CACHE-TTL': '24h' }));
    rejectUnsupported(readInputs({ 'INPUT_CACHE-FROM': 'type=registry,ref=ghcr.io/o/app/cache\ntype=local,src=c', 'INPUT_CACHE-TO': 'type=local,dest=c' }));
    rejectUnsupported(
      readInputs({
        INPUT_SECRETS: 'token=abc',
        'INPUT_SECRET-FILES': 'npmrc=.npmrc',
        'INPUT_SECRET-ENVS': 'gh=GH_TOKEN',
        INPUT_NETWORK: 'none',
        'INPUT_ADD-HOSTS': 'docker:10.0.0.1',
        INPUT_SANDBOX: 'rootless',
      }),
    );
  });
});

describe('inputs map to BuildOptions', () => {
  const gh = githubContext({
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_REPOSITORY: 'Octo-Org/Hello-World',
    GITHUB_SHA: 'a'.repeat(40),
    GITHUB_REF: 'refs/heads/main',
    GITHUB_WORKSPACE: '/ws',
    RUNNER_TEMP: '/rt',
  });
  const created = new Date('2026-01-02T03:04:05Z');
  const map = (env: NodeJS.ProcessEnv) => mapInputs(readInputs(env), gh, {}, created);

  it('adds the OCI source/revision/created labels unless the user sets them', () => {
    const m = map({ INPUT_LABELS: 'org.opencontainers.image.revision=custom\nteam=a,b' });
    assert.deepEqual(m.options.labels, {
      'org.opencontainers.image.source': 'https://github.com/Octo-Org/Hello-World',
      'org.opencontainers.image.revision': 'custom',
      'org.opencontainers.image.created': '2026-01-02T03:04:05.000Z',
      team: 'a,b',
    });
  });

  it('lower-cases GHCR repository names (not tags, not other registries) and says so', () => {
    const m = map({ INPUT_TAGS: 'ghcr.io/Octo-Org/Hello-World:V1.0,registry.example/Keep/Case:x', INPUT_PUSH: 'true' });
    assert.deepEqual(m.options.destinations, ['ghcr.io/octo-org/hello-world:V1.0', 'registry.example/Keep/Case:x']);
    assert.deepEqual(m.pushRegistries, ['ghcr.io', 'registry.example']);
    assert.equal(m.notices.length, 1);
    assert.match(m.notices[0]!, /lower-case.*ghcr.io\/octo-org\/hello-world:V1.0/);
    assert.equal(lowerCaseGhcr('GHCR.IO/A/B@sha256:' + 'f'.repeat(64)), 'ghcr.io/a/b@sha256:' + 'f'.repeat(64));
  });

  it('defaults the context to the workflow repository at its ref and commit', () => {
    const m = map({});
    assert.equal(m.options.context, `git://github.com/Octo-Org/Hello-World#refs/heads/main#${'a'.repeat(40)}`);
    assert.equal(m.defaultGitContext, true);
    assert.equal(m.options.dockerfile, undefined, 'the Dockerfile is found inside the fetched context');
    assert.equal(defaultGitContext({ ...gh, repository: '' }), undefined);
  });

  it('{{defaultContext}}:subdir expands as build-push-action does', () => {
    const m = map({ INPUT_CONTEXT: '{{defaultContext}}:docker' });
    assert.equal(m.options.context, `https://github.com/Octo-Org/Hello-World.git#${'a'.repeat(40)}:docker`);
    assert.equal(m.defaultGitContext, true);
    const pr = mapInputs(readInputs({ INPUT_CONTEXT: '{{defaultContext}}' }), { ...gh, ref: 'refs/pull/7/merge' }, {}, created);
    assert.equal(pr.options.context, 'https://github.com/Octo-Org/Hello-World.git#refs/pull/7/merge');
  });

  it('a local context and file resolve against the workspace', () => {
    const m = map({ INPUT_CONTEXT: 'app', INPUT_FILE: 'docker/Dockerfile.prod' });
    assert.equal(m.options.context, '/ws/app');
    assert.equal(m.options.dockerfile, '/ws/docker/Dockerfile.prod');
    assert.equal(map({ INPUT_CONTEXT: '.' }).options.dockerfile, '/ws/Dockerfile');
    assert.equal(m.defaultGitContext, false);
  });

  it('build-args, target, platform, push-retry, mirrors, insecure registries, certificates', () => {
    const m = map({
      'INPUT_BUILD-ARGS': 'A=1\nB=x,y\nFROM_ENV',
      INPUT_TARGET: 'release',
      INPUT_PLATFORMS: 'linux/arm64',
      'INPUT_PUSH-RETRY': '5',
      'INPUT_REGISTRY-MIRROR': 'mirror.example',
      'INPUT_INSECURE-REGISTRY': 'plain.example:5000',
      'INPUT_REGISTRY-CERTIFICATE': 'my.registry=certs/ca.crt',
    });
    assert.deepEqual(m.options.buildArgs, { A: '1', B: 'x,y', FROM_ENV: undefined });
    assert.equal(m.options.target, 'release');
    assert.equal(m.options.platform, 'linux/arm64');
    assert.equal(m.options.pushRetry, 5);
    assert.deepEqual(m.options.registry?.mirrors, ['mirror.example']);
    assert.deepEqual(m.options.registry?.insecure, ['plain.example:5000']);
    assert.deepEqual(m.options.registry?.caFiles, { 'my.registry': ['/ws/certs/ca.crt'] });
    assert.equal(m.options.noPush, true);
    assert.equal(m.options.defaultOutputDir, '/rt/gantry-image');
  });

  it('push without tags is an error', () => {
    assert.throws(() => map({ INPUT_PUSH: 'true' }), /nothing to push/);
  });

  it('outputs: registry/image/oci directory/docker file; the rest is refused', () => {
    assert.deepEqual(parseOutputs(['type=registry'], '/ws'), { push: true, names: [] });
    assert.deepEqual(parseOutputs(['type=image,"name=a/b:1,c/d:2",push=true'], '/ws'), { push: true, names: ['a/b:1', 'c/d:2'] });
    assert.deepEqual(parseOutputs(['type=image'], '/ws'), { push: false, names: [] });
    assert.equal(parseOutputs(['type=oci,dest=out/img,tar=false'], '/ws').ociLayoutPath, '/ws/out/img');
    assert.equal(parseOutputs(['type=docker,dest=/x/img.tar'], '/ws').tarPath, '/x/img.tar');
    assert.equal(parseOutputs(['type=registry,compression=zstd'], '/ws').compression, 'zstd');
    for (const [item, re] of [
      ['type=oci,dest=img.tar', /OCI tarballs/],
      ['type=docker', /daemonless/],
      ['type=local,dest=out', /exporter type "local"/],
      ['out-dir', /exporter type "local"/],
      ['type=registry,push-by-digest=true', /attribute "push-by-digest"/],
    ] as const) {
      assert.throws(() => parseOutputs([item], '/ws'), re, item);
    }
  });
});

describe('cache inputs map to BuildOptions.cache as the CLIs do', () => {
  const gh = githubContext({ GITHUB_WORKSPACE: '/ws', RUNNER_TEMP: '/rt' });
  const created = new Date('2026-01-02T03:04:05Z');
  const cacheOf = (env: NodeJS.ProcessEnv) => mapInputs(readInputs({ INPUT_TAGS: 'r.example/o/app:1', ...env }), gh, {}, created).options.cache;
  const cases: Array<[string, NodeJS.ProcessEnv, unknown]> = [
    ['nothing set: no cache', {}, undefined],
    ['no-cache alone: no cache', { 'INPUT_NO-CACHE': 'true' }, undefined],
    ['cache: false', { INPUT_CACHE: 'false' }, undefined],
    ['Kaniko cache: true (RUN layers, default repo)', { INPUT_CACHE: 'true' }, { enabled: true, copyLayers: false, runLayers: true }],
    [
      'Kaniko cache with cache-repo and cache-ttl',
      { INPUT_CACHE: 'true', 'INPUT_CACHE-REPO': 'ghcr.io/o/app/cache', 'INPUT_CACHE-TTL': '24h' },
      { enabled: true, copyLayers: false, runLayers: true, repo: 'ghcr.io/o/app/cache', ttl: '24h' },
    ],
    [
      'cache-from/cache-to registry and local (relative to the workspace)',
      { 'INPUT_CACHE-FROM': 'type=registry,ref=ghcr.io/o/app/cache\ntype=local,src=.cache/l', 'INPUT_CACHE-TO': 'type=local,dest=out/c,mode=max' },
      { enabled: true, copyLayers: true, from: ['type=registry,ref=ghcr.io/o/app/cache', 'type=local,src=/ws/.cache/l'], to: ['type=local,dest=/ws/out/c,mode=max'] },
    ],
    [
      'no-cache with cache-to: store without reading',
      { 'INPUT_NO-CACHE': 'true', 'INPUT_CACHE-FROM': 'type=local,src=/c', 'INPUT_CACHE-TO': 'type=local,dest=/c' },
      { enabled: true, copyLayers: true, from: [], to: ['type=local,dest=/c'], noLookup: true },
    ],
    [
      'a ghcr.io cache repository is lower-cased like the tags',
      { 'INPUT_CACHE-FROM': 'type=registry,ref=ghcr.io/Octo-Org/App/cache', 'INPUT_CACHE-TO': 'type=registry,ref=ghcr.io/Octo-Org/App/cache,mode=max' },
      { enabled: true, copyLayers: true, from: ['type=registry,ref=ghcr.io/octo-org/app/cache'], to: ['type=registry,ref=ghcr.io/octo-org/app/cache,mode=max'] },
    ],
    ['no-cache with only cache-from: no cache', { 'INPUT_NO-CACHE': 'true', 'INPUT_CACHE-FROM': 'type=local,src=/c' }, undefined],
    ['cache-ttl with cache-to', { 'INPUT_CACHE-TO': 'type=registry,ref=r.example/o/c', 'INPUT_CACHE-TTL': '1h' }, { enabled: true, copyLayers: true, from: [], to: ['type=registry,ref=r.example/o/c'], ttl: '1h' }],
  ];
  for (const [name, env, want] of cases) {
    it(name, () => assert.deepEqual(cacheOf(env), want));
  }

  for (const [name, env, re] of [
    ['cache-repo without cache', { 'INPUT_CACHE-REPO': 'r/c' }, /input "cache-repo" has no effect without "cache: true"/],
    ['cache-ttl without cache', { 'INPUT_CACHE-TTL': '1h' }, /input "cache-ttl" has no effect/],
    ['cache and cache-to together', { INPUT_CACHE: 'true', 'INPUT_CACHE-TO': 'type=local,dest=/c' }, /both choose where the layer cache lives/],
    ['cache: maybe', { INPUT_CACHE: 'maybe' }, /input "cache" must be true or false/],
  ] as const) {
    it(`refuses ${name}`, () => assert.throws(() => cacheOf(env), re));
  }
});

describe('failures and results', () => {
  it('a GHCR 403 says which permission the workflow needs', () => {
    const denied = new GantryError('DENIED', 'pushing ghcr.io/o/app:1: denied', { hint: 'generic', status: 403 });
    const msg = failureMessage(denied, ['ghcr.io']);
    assert.match(msg, /^pushing ghcr.io\/o\/app:1: denied\nhint: .*permissions: packages: write.*Manage Actions access/s);
    assert.equal(failureMessage(denied, ['registry.example']), 'pushing ghcr.io/o/app:1: denied\nhint: generic');
    assert.match(failureMessage(new Error('boom'), []), /boom/);
    const other = new GantryError('DENIED', 'pushing registry.example/o/app:1: denied', { hint: 'generic' });
    assert.equal(failureMessage(other, ['ghcr.io', 'registry.example']), 'pushing registry.example/o/app:1: denied\nhint: generic');
  });

  const result: BuildResult = {
    digest: 'sha256:' + '1'.repeat(64),
    imageId: 'sha256:' + '2'.repeat(64),
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    pushed: [{ reference: 'reg.example/a/b:1', digest: 'sha256:' + '1'.repeat(64) }],
    outputs: [],
    steps: [
      { stage: 'build', instruction: 'COPY a.txt /a|b', cached: false, ms: 1234, layer: 'sha256:' + '3'.repeat(64) },
      { stage: 'build', instruction: 'ENV X=1', cached: false, ms: 2 },
    ],
  };

  it('metadata has build-push-action\'s keys', () => {
    assert.deepEqual(metadataJson(result, ['reg.example/a/b:1']), {
      'containerimage.digest': result.digest,
      'containerimage.config.digest': result.imageId,
      'containerimage.mediatype': result.manifestMediaType,
      'image.name': 'reg.example/a/b:1',
    });
  });

  it('the summary tables the image and every step', () => {
    const md = summaryMarkdown({ result, tags: ['reg.example/a/b:1'], stats: { size: 3 * 1024 * 1024, layers: 2 }, totalMs: 4500 });
    assert.match(md, /\| digest \| `sha256:1{64}` \|/);
    assert.match(md, /\| size \| 3\.0 MiB \|/);
    assert.match(md, /\| layers \| 2 \|/);
    assert.match(md, /\| build \| `COPY a.txt \/a\\\|b` \| 1\.23 s \| `sha256:333333333333…` \|/);
    assert.match(md, /\| build \| `ENV X=1` \| 0\.00 s \|  \|/);
  });
});

describe('credentials', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('action-creds');
  });
  after(async () => {
    await tmp?.cleanup();
  });

  const base = { registry: '', username: '', password: '', githubToken: '', actor: 'octocat' };

  it('an existing config.json (docker/login-action) is used as is', async () => {
    const dir = join(tmp.path, 'existing');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { 'ghcr.io': { auth: 'eDp5' } } }));
    const c = await prepareCredentials({ ...base, githubToken: 'ghs_token', pushRegistries: ['ghcr.io'], env: { DOCKER_CONFIG: dir }, tempRoot: tmp.path });
    assert.equal(c.dockerConfigDir, undefined);
    assert.deepEqual(c.secrets, []);
    await c.cleanup();
  });

  it('GITHUB_TOKEN logs in to ghcr.io as the actor when nothing else is configured', async () => {
    const c = await prepareCredentials({ ...base, githubToken: 'ghs_secret123', pushRegistries: ['ghcr.io', 'other.example'], env: { DOCKER_CONFIG: join(tmp.path, 'none') }, tempRoot: tmp.path });
    assert.ok(c.dockerConfigDir);
    const cfg = JSON.parse(await readFile(join(c.dockerConfigDir, 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.deepEqual(Object.keys(cfg.auths), ['ghcr.io']);
    assert.equal(Buffer.from(cfg.auths['ghcr.io']!.auth, 'base64').toString(), 'octocat:ghs_secret123');
    assert.ok(c.secrets.includes('ghs_secret123') && c.secrets.includes(cfg.auths['ghcr.io']!.auth));
    assert.ok(c.notes.some((n) => /ghcr.io: GITHUB_TOKEN as octocat/.test(n)));
    await c.cleanup();
    await assert.rejects(readFile(join(c.dockerConfigDir, 'config.json')), /ENOENT/);
  });

  it('username/password merge into a copy of the existing config, replacing a helper for that registry', async () => {
    const dir = join(tmp.path, 'merge');
    await mkdir(dir, { recursive: true });
    const original = JSON.stringify({ auths: { 'keep.example': { auth: 'a2VlcDpt' } }, credHelpers: { 'reg.example': 'ecr-login', 'other.example': 'gcr' }, proxies: { x: 1 } });
    await writeFile(join(dir, 'config.json'), original);
    const c = await prepareCredentials({ ...base, username: 'u', password: 'p@ss', pushRegistries: ['reg.example'], env: { DOCKER_CONFIG: dir }, tempRoot: tmp.path });
    const cfg = JSON.parse(await readFile(join(c.dockerConfigDir!, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(cfg, {
      auths: { 'keep.example': { auth: 'a2VlcDpt' }, 'reg.example': { auth: Buffer.from('u:p@ss').toString('base64') } },
      credHelpers: { 'other.example': 'gcr' },
      proxies: { x: 1 },
    });
    assert.equal(await readFile(join(dir, 'config.json'), 'utf8'), original, 'the user\'s file is untouched');
    await c.cleanup();
  });

  it('half a login is an error', async () => {
    await assert.rejects(prepareCredentials({ ...base, username: 'u', pushRegistries: [], env: {}, tempRoot: tmp.path }), /input "password" is empty/);
    await assert.rejects(prepareCredentials({ ...base, registry: 'r.example', pushRegistries: [], env: { HOME: tmp.path }, tempRoot: tmp.path }), /"registry" is set/);
  });
});

describe('action.yml', () => {
  const actionInputs = async (): Promise<string[]> => {
    const text = await readFile(join(repoRoot, 'action.yml'), 'utf8');
    const block = text.slice(text.indexOf('\ninputs:\n'), text.indexOf('\noutputs:\n'));
    return [...block.matchAll(/^ {2}([a-z][a-z-]*):\s*$/gm)].map((m) => m[1]!);
  };

  it('declares exactly the inputs the code reads (none ignored, none hidden)', async () => {
    const read = new Set<string>();
    const recorder = new Proxy({} as NodeJS.ProcessEnv, {
      get(_t, key) {
        if (typeof key === 'string' && key.startsWith('INPUT_')) read.add(key);
        return undefined;
      },
    });
    readInputs(recorder);
    assert.deepEqual([...read].sort(), (await actionInputs()).map(inputEnvName).sort());
  });

  it('runs the bundle on node24, declares the outputs, and every input is documented', async () => {
    const text = await readFile(join(repoRoot, 'action.yml'), 'utf8');
    assert.match(text, /\nruns:\n {2}using: node24\n {2}main: dist\/index\.cjs\n/);
    for (const o of ['digest', 'imageid', 'metadata']) assert.match(text, new RegExp(`\\n {2}${o}:\\n {4}description: `));
    const doc = await readFile(join(repoRoot, 'docs', 'github-action.md'), 'utf8');
    for (const name of await actionInputs()) assert.ok(doc.includes(`\`${name}\``), `docs/github-action.md documents ${name}`);
  });
});
