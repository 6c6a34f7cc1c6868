/**
 * The RUN inputs (secrets, secret-files, secret-envs, network, add-hosts, sandbox) and the choice
 * of where the step builds (in-process / rootless re-exec / sudo re-exec), with injected probes.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readInputs } from '../../src/action/inputs.js';
import { mapRunInputs, masksFor, parseAddHostsInput, SECRET_ENV_PREFIX } from '../../src/action/run-inputs.js';
import { chooseRunner, chownTree, mkdirOwned, NO_RUNNER_HINT, rootlessWorks, RUNNER_ENV, sudoArgv, type RunnerProbes } from '../../src/action/runner.js';
import { detectSandbox } from '../../src/run/index.js';
import { failureMessage } from '../../src/action/run.js';
import { GantryError } from '../../src/util/errors.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';

const map = (env: NodeJS.ProcessEnv) => mapRunInputs(readInputs(env), '/ws');

describe('RUN inputs map to BuildOptions', () => {
  it('secrets: each value travels in a private variable and is masked, whole and line by line', () => {
    const m = map({ INPUT_SECRETS: 'NPM_TOKEN=npm_abc=def\n"MULTI=line one\nline two"' });
    assert.deepEqual(m.secrets, { NPM_TOKEN: { env: `${SECRET_ENV_PREFIX}0` }, MULTI: { env: `${SECRET_ENV_PREFIX}1` } });
    assert.deepEqual(m.secretEnv, { [`${SECRET_ENV_PREFIX}0`]: 'npm_abc=def', [`${SECRET_ENV_PREFIX}1`]: 'line one\nline two' });
    assert.deepEqual(m.masks, ['npm_abc=def', 'line one\nline two', 'line one', 'line two']);
  });

  it('secret-files are read relative to the workspace; secret-envs name a variable', () => {
    const m = map({ 'INPUT_SECRET-FILES': 'npmrc=.npmrc\nabs=/etc/key', 'INPUT_SECRET-ENVS': 'gh=GH_TOKEN,aws=AWS_KEY' });
    assert.deepEqual(m.secrets, { npmrc: { src: '/ws/.npmrc' }, abs: { src: '/etc/key' }, gh: { env: 'GH_TOKEN' }, aws: { env: 'AWS_KEY' } });
    assert.deepEqual(m.masks, []);
  });

  it('network, add-hosts (host:ip, host=ip, IPv6) and sandbox', () => {
    const m = map({ INPUT_NETWORK: 'none', 'INPUT_ADD-HOSTS': 'docker:10.180.0.1\nv6:[::1],db=192.168.1.2', INPUT_SANDBOX: 'rootless' });
    assert.equal(m.network, 'none');
    assert.equal(m.sandbox, 'rootless');
    assert.deepEqual(m.addHosts, [
      { host: 'docker', ip: '10.180.0.1' },
      { host: 'v6', ip: '::1' },
      { host: 'db', ip: '192.168.1.2' },
    ]);
    const d = map({});
    assert.equal(d.sandbox, 'auto');
    assert.equal(d.network, undefined);
    assert.equal(d.addHosts, undefined);
    assert.deepEqual(d.secrets, {});
  });

  const bad: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
    ['a secret without id=', { INPUT_SECRETS: 'hunter2hunter2' }, /input "secrets": invalid entry "#1 \(value not shown\)"/],
    ['a secret with an empty value', { INPUT_SECRETS: 'a=1\nTOKEN=' }, /input "secrets": invalid entry "#2/],
    ['a secret id given twice', { INPUT_SECRETS: 'tok=1', 'INPUT_SECRET-ENVS': 'tok=X' }, /secret "tok" is given twice.*secret-envs/],
    ['a secret-file without a path', { 'INPUT_SECRET-FILES': 'npmrc' }, /input "secret-files": invalid entry "npmrc"/],
    ['an unknown network', { INPUT_NETWORK: 'bridge' }, /input "network" must be one of default, none, host, got "bridge"/],
    ['an add-host without an ip', { 'INPUT_ADD-HOSTS': 'docker' }, /input "add-hosts": invalid entry "docker"/],
    ['an unknown sandbox', { INPUT_SANDBOX: 'docker' }, /input "sandbox" must be one of auto, ns, rootless, inplace/],
  ];
  for (const [name, env, re] of bad) {
    it(`rejects ${name}`, () => {
      assert.throws(() => map(env), (err: unknown) => err instanceof GantryError && err.code === 'INVALID_ARGUMENT' && re.test(err.message) && !!err.hint);
    });
  }

  it('never puts a secret value in an error message', () => {
    assert.throws(() => map({ INPUT_SECRETS: 'hunter2hunter2' }), (err: Error) => !err.message.includes('hunter2'));
  });

  it('masksFor keeps a one-line value whole', () => {
    assert.deepEqual(masksFor('abc'), ['abc']);
    assert.deepEqual(parseAddHostsInput([]), []);
  });
});

interface ProbeState {
  root?: boolean;
  userns?: boolean;
  sudo?: boolean;
  env?: NodeJS.ProcessEnv;
}

function probes(s: ProbeState): RunnerProbes & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    env: s.env ?? {},
    isRoot: () => !!s.root,
    userNamespace: async () => {
      asked.push('userns');
      return s.userns ? { ok: true, reason: 'subordinate id range mapped' } : { ok: false, reason: 'user namespaces are not available here: Operation not permitted' };
    },
    sudo: async () => {
      asked.push('sudo');
      return s.sudo ? { ok: true, reason: 'ok' } : { ok: false, reason: 'sudo: a password is required' };
    },
  };
}

describe('where the step builds', () => {
  const cases: Array<{ name: string; sandbox: 'auto' | 'ns' | 'rootless' | 'inplace'; state: ProbeState; kind: string; why: RegExp; asked: string[] }> = [
    { name: 'root builds in this process without probing', sandbox: 'auto', state: { root: true, userns: true, sudo: true }, kind: 'in-process', why: /running as root/, asked: [] },
    { name: 'the re-executed step never re-executes again', sandbox: 'auto', state: { env: { [RUNNER_ENV]: 'sudo' } }, kind: 'in-process', why: /re-executed by the step \(sudo\)/, asked: [] },
    { name: 'non-root with user namespaces: rootless', sandbox: 'auto', state: { userns: true, sudo: true }, kind: 'rootless', why: /not root, and the rootless sandbox works here \(subordinate id range mapped\)/, asked: ['userns'] },
    { name: 'non-root without user namespaces, with sudo: sudo', sandbox: 'auto', state: { sudo: true }, kind: 'sudo', why: /user namespaces unavailable.*Operation not permitted.*sudo works/, asked: ['userns', 'sudo'] },
    { name: 'sandbox: ns skips user namespaces and uses sudo', sandbox: 'ns', state: { userns: true, sudo: true }, kind: 'sudo', why: /sandbox: ns needs root/, asked: ['sudo'] },
    { name: 'sandbox: rootless with user namespaces', sandbox: 'rootless', state: { userns: true }, kind: 'rootless', why: /rootless sandbox works here/, asked: ['userns'] },
    { name: 'nothing usable with auto: in-process, RUN will fail with the hint', sandbox: 'auto', state: {}, kind: 'in-process', why: /not root.*sudo -n fails \(sudo: a password is required\)/, asked: ['userns', 'sudo'] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const p = probes(c.state);
      const choice = await chooseRunner(c.sandbox, p);
      assert.equal(choice.kind, c.kind);
      assert.match(choice.why, c.why);
      assert.deepEqual(p.asked, c.asked);
    });
  }

  it('nothing usable: the note and the failure say what to do', async () => {
    const choice = await chooseRunner('auto', probes({}));
    assert.ok(choice.unavailable);
    assert.match(choice.unavailable, /no RUN sandbox can be used on this runner/);
    for (const what of [/enable unprivileged user namespaces/, /passwordless sudo/, /executor image/]) assert.match(NO_RUNNER_HINT, what);
    // The engine's own "no sandbox" error gets the runner's hint instead of its generic one.
    const engine = new GantryError('UNSUPPORTED', 'no RUN sandbox works on this machine (ns: not running as root)', { hint: 'run gantry as root' });
    assert.match(failureMessage(engine, [], choice.unavailable), /hint: no RUN sandbox can be used on this runner.*passwordless sudo/s);
    assert.match(failureMessage(engine, []), /hint: run gantry as root/);
    const other = new GantryError('UNSUPPORTED', 'input "ssh" is not supported', { hint: 'remove it' });
    assert.match(failureMessage(other, [], choice.unavailable), /hint: remove it$/);
  });

  it('secret errors from the engine get hints in terms of the step\'s inputs', () => {
    const cases: Array<[GantryError, RegExp]> = [
      [new GantryError('NOT_FOUND', 'Dockerfile:2: secret npm is required but was not provided', { hint: 'pass it with --secret id=npm,src=FILE (or env=VAR)' }), /hint: give it to the step: `secrets: npm=VALUE`.*`secret-files: npm=PATH`.*`secret-envs: npm=ENV_VAR`/],
      [new GantryError('NOT_FOUND', 'secret key: cannot read /ws/key: ENOENT', { hint: 'check the src= path of --secret' }), /hint: check the path given in `secret-files`/],
      [new GantryError('NOT_FOUND', 'secret gh: environment variable GH_TOKEN is not set', { hint: 'export the variable, or give the secret as a file with src=' }), /hint: set the variable that `secret-envs` names in the step's `env:` block/],
    ];
    for (const [err, re] of cases) assert.match(failureMessage(err, []), re);
  });

  const refusals: Array<[string, 'ns' | 'rootless' | 'inplace', ProbeState, RegExp]> = [
    ['sandbox: rootless without user namespaces', 'rootless', { sudo: true }, /sandbox: rootless cannot be used on this runner: user namespaces are not available/],
    ['sandbox: ns without root or sudo', 'ns', { userns: true }, /sandbox: ns needs root: not root, and sudo -n fails/],
    ['sandbox: inplace without root or sudo', 'inplace', {}, /sandbox: inplace needs root/],
  ];
  for (const [name, sandbox, state, re] of refusals) {
    it(`fails before any work: ${name}`, async () => {
      await assert.rejects(chooseRunner(sandbox, probes(state)), (err: unknown) => err instanceof GantryError && err.code === 'UNSUPPORTED' && re.test(err.message) && !!err.hint);
    });
  }

  it('sudo keeps the environment and sets PATH and HOME again after it', () => {
    assert.deepEqual(sudoArgv(['/usr/bin/node', '/a/index.cjs'], { PATH: '/p:/q', HOME: '/home/runner' }), [
      '-n', '--preserve-env', '--', 'env', 'PATH=/p:/q', 'HOME=/home/runner', '/usr/bin/node', '/a/index.cjs',
    ]);
  });
});

let tmp: TempDir;
before(async () => {
  tmp = await tempDir('action-runner');
});
after(async () => {
  await tmp?.cleanup();
});

describe('the rootless probe', () => {
  it("says what the build engine's sandbox detection says on this machine", async () => {
    const engine = (await detectSandbox({ stateDir: tmp.path })).checks.find((c) => c.kind === 'rootless')!;
    assert.deepEqual(await rootlessWorks(tmp.path), { ok: engine.usable, reason: engine.reason });
  });

  it('a probe that cannot run is "not usable", never a failed step', async () => {
    const r = await rootlessWorks(join(tmp.path, 'missing', 'dir'));
    assert.equal(r.ok, false);
    assert.ok(r.reason.length > 0);
  });
});

describe('files written under sudo go back to the runner user', () => {
  const owner = { uid: 4242, gid: 4343 };

  it('chownTree changes a whole tree and symlinks themselves, not their targets', async () => {
    const root = join(tmp.path, 'layout');
    await mkdir(join(root, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(root, 'index.json'), '{}');
    await writeFile(join(root, 'blobs', 'sha256', 'abc'), 'x');
    const outside = join(tmp.path, 'outside');
    await writeFile(outside, 'keep');
    await symlink(outside, join(root, 'link'));
    await chownTree(root, owner);
    for (const p of [root, join(root, 'index.json'), join(root, 'blobs'), join(root, 'blobs', 'sha256', 'abc'), join(root, 'link')]) {
      const st = await lstat(p);
      assert.deepEqual([st.uid, st.gid], [owner.uid, owner.gid], p);
    }
    assert.equal((await lstat(outside)).uid, process.getuid!());
    await chownTree(join(tmp.path, 'missing'), owner); // absent outputs are not an error
  });

  it('mkdirOwned gives only the directories it creates', async () => {
    const existing = join(tmp.path, 'home');
    await mkdir(existing);
    await mkdirOwned(join(existing, '.cache', 'gantry', 'run-cache'), owner);
    assert.equal((await lstat(existing)).uid, process.getuid!());
    for (const p of ['.cache', '.cache/gantry', '.cache/gantry/run-cache']) assert.equal((await lstat(join(existing, p))).uid, owner.uid, p);
  });
});
