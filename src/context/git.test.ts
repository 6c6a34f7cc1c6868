import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readlink, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isGantryError, type GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { makeFixtureRepo, startGitServer, type FixtureRepo, type GitServer } from '../testing/git-server.js';
import { makeCa, makeServerCert } from '../testing/certs.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { openContext, type ContextOptions, type OpenedContext } from './open.js';

const USER = 'alice';
const PASSWORD = 'hunter22-secret';
const TOKEN = 'tok-0123456789';

let tmp: TempDir;
let work: string;
let fx: FixtureRepo;
let open_: GitServer;
let basic: GitServer;
let token: GitServer;
let refusing: GitServer;
let tls: GitServer;
const opened: OpenedContext[] = [];

before(async () => {
  tmp = await tempDir('context-git');
  work = join(tmp.path, 'work');
  fx = await makeFixtureRepo(tmp.path);
  open_ = await startGitServer({ root: tmp.path });
  basic = await startGitServer({ root: tmp.path, auth: { username: USER, password: PASSWORD } });
  token = await startGitServer({ root: tmp.path, auth: { username: TOKEN, password: '' } });
  refusing = await startGitServer({ root: tmp.path, refuseWants: { oids: [fx.f1], status: 500 } });
  const ca = await makeCa(tmp.path);
  tls = await startGitServer({ root: tmp.path, tls: await makeServerCert(ca, tmp.path) });
});

after(async () => {
  for (const c of opened) await c.cleanup();
  await Promise.all([open_, basic, token, refusing, tls].map((s) => s?.close()));
  await tmp.cleanup();
});

async function openGit(location: string, opts: ContextOptions = {}): Promise<OpenedContext> {
  const ctx = await openContext(location, { workDir: work, env: {}, ...opts });
  opened.push(ctx);
  return ctx;
}

function uploadPackBodies(server: GitServer, since: number): string[] {
  return server.requests.slice(since).filter((r) => r.method === 'POST').map((r) => r.body);
}

test('git: clones the default branch shallowly, without .git, keeping modes and symlinks', async () => {
  const before = open_.requests.length;
  const started = Date.now();
  const ctx = await openGit(`${open_.url}/repo.git`);
  const elapsed = Date.now() - started;
  assert.equal(ctx.gitCommit, fx.c2);
  assert.equal(ctx.source, `${open_.url}/repo.git`);
  assert.equal(await readFile(join(ctx.dir, 'a.txt'), 'utf8'), 'two\n');
  assert.equal((await stat(join(ctx.dir, 'run.sh'))).mode & 0o777, 0o755);
  assert.equal(await readlink(join(ctx.dir, 'link')), 'a.txt');
  assert.deepEqual((await readdir(ctx.dir)).sort(), ['Dockerfile', 'a.txt', 'link', 'run.sh', 'sub']);
  const bodies = uploadPackBodies(open_, before);
  assert.equal(bodies.length, 1);
  assert.match(bodies[0]!, new RegExp(`want ${fx.c2}`));
  assert.match(bodies[0]!, /deepen 1/);
  assert.ok(elapsed < 10_000, `clone took ${elapsed} ms`);
});

test('git: Kaniko git://host/repo#refs/heads/feature#<sha> over GIT_PULL_METHOD=http checks out exactly that commit', async () => {
  const before = open_.requests.length;
  const ctx = await openGit(`git://${open_.host}/repo.git#refs/heads/feature#${fx.f1}`, { env: { GIT_PULL_METHOD: 'http' } });
  assert.equal(ctx.gitCommit, fx.f1);
  assert.equal(await readFile(join(ctx.dir, 'feature.txt'), 'utf8'), 'f1\n');
  const bodies = uploadPackBodies(open_, before);
  assert.equal(bodies.length, 1, 'the pinned commit is fetched by itself');
  assert.match(bodies[0]!, new RegExp(`want ${fx.f1}`));
  assert.match(bodies[0]!, /deepen 1/);
});

test('git: a server that refuses the pinned commit falls back to the full history of the ref', async () => {
  const before = refusing.requests.length;
  const ctx = await openGit(`git://${refusing.host}/repo.git#refs/heads/feature#${fx.f1}`, { env: { GIT_PULL_METHOD: 'http' } });
  assert.equal(ctx.gitCommit, fx.f1);
  assert.equal(await readFile(join(ctx.dir, 'feature.txt'), 'utf8'), 'f1\n');
  const bodies = uploadPackBodies(refusing, before);
  assert.equal(bodies.length, 2);
  assert.match(bodies[1]!, new RegExp(`want ${fx.f2}`));
  assert.doesNotMatch(bodies[1]!, /deepen|shallow/);
});

const refCases: Array<{ name: string; location: (s: GitServer) => string; opts?: ContextOptions; commit: () => string; file: string; content: string }> = [
  { name: 'annotated tag by short name', location: (s) => `${s.url}/repo.git#v1`, commit: () => fx.c1, file: 'a.txt', content: 'one\n' },
  { name: 'lightweight tag by full ref (Kaniko form)', location: (s) => `git://${s.host}/repo.git#refs/tags/light`, opts: { env: { GIT_PULL_METHOD: 'http' } }, commit: () => fx.c1, file: 'a.txt', content: 'one\n' },
  { name: 'branch by short name', location: (s) => `${s.url}/repo.git#feature`, commit: () => fx.f2, file: 'feature.txt', content: 'f2\n' },
  { name: 'pull request ref', location: (s) => `git://${s.host}/repo.git#refs/pull/1/head`, opts: { env: { GIT_PULL_METHOD: 'http' } }, commit: () => fx.f2, file: 'feature.txt', content: 'f2\n' },
  { name: '--git branch= overrides the URL', location: (s) => `${s.url}/repo.git#main`, opts: { git: 'branch=feature,single-branch=true' }, commit: () => fx.f2, file: 'feature.txt', content: 'f2\n' },
  { name: 'full SHA as the BuildKit fragment', location: (s) => `${s.url}/repo.git#${fx.c1}`, commit: () => fx.c1, file: 'a.txt', content: 'one\n' },
];

for (const c of refCases) {
  test(`git: ref ${c.name}`, async () => {
    const ctx = await openGit(c.location(open_), c.opts);
    assert.equal(ctx.gitCommit, c.commit());
    assert.equal(await readFile(join(ctx.dir, c.file), 'utf8'), c.content);
  });
}

test('git: BuildKit #ref:subdir uses the subdirectory as the context root', async () => {
  const ctx = await openGit(`${open_.url}/repo.git#main:sub/dir`);
  assert.ok(ctx.dir.endsWith(join('context', 'sub', 'dir')), ctx.dir);
  assert.deepEqual(await readdir(ctx.dir), ['file.txt']);
  assert.equal(ctx.source, `${open_.url}/repo.git#main:sub/dir`);
});

test('git: subPath applies after the clone, and may not leave it through a symlink', async () => {
  const ctx = await openGit(`${open_.url}/repo.git`, { subPath: 'sub/dir' });
  assert.deepEqual(await readdir(ctx.dir), ['file.txt']);
  await assert.rejects(openGit(`${open_.url}/repo.git`, { subPath: 'sub/escape' }), (err: unknown) => isGantryError(err, 'UNSAFE_PATH') && err.message.includes('sub/escape'));
  await assert.rejects(openGit(`${open_.url}/repo.git`, { subPath: '../..' }), (err: unknown) => isGantryError(err, 'UNSAFE_PATH'));
});

test('git: keepGitDir leaves a shallow repository in the context', async () => {
  const ctx = await openGit(`${open_.url}/repo.git#main`, { keepGitDir: true });
  assert.ok(existsSync(join(ctx.dir, '.git', 'shallow')));
  assert.equal((await readFile(join(ctx.dir, '.git', 'HEAD'), 'utf8')).trim(), fx.c2);
});

test('git: cleanup removes the clone', async () => {
  const ctx = await openContext(`${open_.url}/repo.git`, { workDir: work, env: {} });
  assert.ok(existsSync(ctx.dir));
  await ctx.cleanup();
  assert.equal(existsSync(ctx.dir), false);
});

const authOk: Array<{ name: string; server: () => GitServer; env: NodeJS.ProcessEnv; location?: (s: GitServer) => string }> = [
  { name: 'GIT_USERNAME/GIT_PASSWORD', server: () => basic, env: { GIT_USERNAME: USER, GIT_PASSWORD: PASSWORD } },
  { name: 'GIT_TOKEN as the user name (wins over username/password)', server: () => token, env: { GIT_TOKEN: TOKEN, GIT_USERNAME: USER, GIT_PASSWORD: 'ignored' } },
  { name: 'credentials in the URL', server: () => basic, env: {}, location: (s) => `http://${USER}:${PASSWORD}@${s.host}/repo.git#main` },
];

for (const a of authOk) {
  test(`git: basic auth with ${a.name}`, async () => {
    const s = a.server();
    const logged: string[] = [];
    const logger: Logger = { log: (_l, m) => logged.push(m) };
    const ctx = await openGit(a.location ? a.location(s) : `git://${s.host}/repo.git#refs/heads/main`, { env: { GIT_PULL_METHOD: 'http', ...a.env }, logger });
    assert.equal(ctx.gitCommit, fx.c2);
    for (const secret of [PASSWORD, TOKEN]) {
      assert.ok(!ctx.source.includes(secret));
      assert.ok(!logged.some((l) => l.includes(secret)), 'no credentials in logs');
    }
  });
}

const authBad: Array<{ name: string; env: NodeJS.ProcessEnv; hint: RegExp }> = [
  { name: 'a wrong password', env: { GIT_USERNAME: USER, GIT_PASSWORD: 'wrong-password-123' }, hint: /rejected the credentials/ },
  { name: 'no credentials', env: {}, hint: /set GIT_TOKEN/ },
];

for (const b of authBad) {
  test(`git: ${b.name} fails with UNAUTHORIZED naming the repository, never the password`, async () => {
    await assert.rejects(openGit(`git://${basic.host}/repo.git#refs/heads/main`, { env: { GIT_PULL_METHOD: 'http', ...b.env } }), (err: unknown) => {
      assert.ok(isGantryError(err, 'UNAUTHORIZED'), String(err));
      const e = err as GantryError;
      assert.ok(e.message.includes(`${basic.url}/repo.git`), e.message);
      assert.match(e.hint ?? '', b.hint);
      const all = JSON.stringify({ m: e.message, d: e.details, s: e.stack });
      assert.ok(!all.includes('wrong-password-123') && !all.includes(PASSWORD), all);
      return true;
    });
  });
}

const failures: Array<{ name: string; location: (s: GitServer) => string; opts?: ContextOptions; code: string; mentions: RegExp }> = [
  { name: 'unknown ref lists the branches', location: (s) => `${s.url}/repo.git#nope`, code: 'NOT_FOUND', mentions: /ref "nope" not found[^]*feature, main/ },
  { name: 'unknown --git branch', location: (s) => `${s.url}/repo.git`, opts: { git: 'branch=nope' }, code: 'NOT_FOUND', mentions: /--git branch=nope/ },
  { name: 'missing repository', location: (s) => `${s.url}/missing.git`, code: 'NOT_FOUND', mentions: /missing\.git/ },
  { name: 'an unreachable server', location: () => 'http://127.0.0.1:1/repo.git', code: 'IO', mentions: /ECONNREFUSED[^]*host name and port/ },
  { name: 'missing subdir', location: (s) => `${s.url}/repo.git#main:nope/dir`, code: 'CONTEXT_INVALID', mentions: /nope\/dir/ },
  {
    name: 'a submodule over SSH with recurse-submodules=true',
    location: (s) => `${s.url}/repo.git#submodules-ssh`,
    opts: { git: 'recurse-submodules=true' },
    code: 'UNSUPPORTED',
    mentions: /recurse-submodules[^]*not http/,
  },
];

for (const f of failures) {
  test(`git: ${f.name} is ${f.code}`, async () => {
    const before = existsSync(work) ? (await readdir(work)).length : 0;
    await assert.rejects(openGit(f.location(open_), f.opts), (err: unknown) => {
      assert.ok(isGantryError(err), String(err));
      assert.equal(err.code, f.code, err.message);
      assert.match(err.message + ' ' + (err.hint ?? ''), f.mentions);
      return true;
    });
    assert.equal((await readdir(work)).length, before, 'a failed clone leaves no temp dir');
  });
}

test('git: submodules are skipped (with a warning) when recursion is off', async () => {
  const warnings: string[] = [];
  const ctx = await openGit(`${open_.url}/repo.git#submodules`, { logger: { log: (level, m) => level === 'warn' && warnings.push(m) } });
  assert.ok(existsSync(join(ctx.dir, '.gitmodules')));
  assert.equal(existsSync(join(ctx.dir, 'lib', 'feature.txt')), false);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /submodules/);
});

test('git: recurse-submodules=true checks submodules out at their recorded commit', async () => {
  const ctx = await openGit(`${open_.url}/repo.git#submodules`, { git: 'recurse-submodules=true' });
  assert.match(ctx.gitCommit ?? '', /^[0-9a-f]{40}$/);
  assert.notEqual(ctx.gitCommit, fx.c1);
  assert.equal(await readFile(join(ctx.dir, 'lib', 'feature.txt'), 'utf8'), 'f2\n');
  assert.equal(await readFile(join(ctx.dir, 'a.txt'), 'utf8'), 'one\n');
  assert.equal(existsSync(join(ctx.dir, 'lib', '.git')), false);
});

test('git: an aborted signal stops the clone with ABORTED', async () => {
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(openGit(`${open_.url}/repo.git`, { signal: ac.signal }), (err: unknown) => isGantryError(err, 'ABORTED'));
});

test('git: aborting during the fetch stops it with ABORTED and removes the temp dir', async () => {
  const ac = new AbortController();
  const before = existsSync(work) ? (await readdir(work)).length : 0;
  const logger: Logger = { log: (_l, m) => m.startsWith('fetching') && ac.abort() };
  await assert.rejects(openGit(`${open_.url}/repo.git`, { signal: ac.signal, logger }), (err: unknown) => isGantryError(err, 'ABORTED'));
  assert.equal((await readdir(work)).length, before);
});

test('git: an untrusted HTTPS certificate fails with a hint; --git insecure-skip-tls=true accepts it', async () => {
  assert.ok(tls.url.startsWith('https://'));
  await assert.rejects(openGit(`${tls.url}/repo.git`), (err: unknown) => {
    assert.ok(isGantryError(err, 'IO'), String(err));
    assert.match(err.hint ?? '', /insecure-skip-tls=true/);
    assert.ok(err.message.includes(`${tls.url}/repo.git`), err.message);
    return true;
  });
  const ctx = await openGit(`git://${tls.host}/repo.git#refs/heads/main`, { git: 'insecure-skip-tls=true' });
  assert.equal(ctx.gitCommit, fx.c2);
});
