import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey, keyTag, CACHE_KEY_VERSION, type CacheKeyInput } from './keys.js';
import { parseGoDuration } from './duration.js';
import { isGantryError } from '../util/errors.js';

const PARENT = `sha256:${'a'.repeat(64)}`;
const FILES = `sha256:${'b'.repeat(64)}`;

const base: CacheKeyInput = {
  parent: PARENT,
  platform: 'linux/amd64',
  instruction: { kind: 'copy', args: ['app/', '/srv/app'], flags: { chmod: '0644', link: false } },
  env: ['PATH=/usr/bin:/bin', 'HOME=/root'],
  buildArgs: { VERSION: '1.2', GIT_SHA: 'deadbeef' },
  argsInScope: ['VERSION'],
  files: FILES,
  mounts: [{ type: 'cache', id: 'npm', target: '/root/.npm' }],
  heredocs: [{ name: 'EOF', body: 'echo hi\n' }],
};

function variant(change: (i: CacheKeyInput) => CacheKeyInput): string {
  return cacheKey(change(structuredClone(base)));
}

test('a cache key is sha256 over the inputs and stable for equal inputs', () => {
  const k = cacheKey(base);
  assert.match(k, /^sha256:[a-f0-9]{64}$/);
  assert.equal(cacheKey(structuredClone(base)), k);
  assert.equal(keyTag(k), k.slice(7));
  assert.equal(CACHE_KEY_VERSION, 'gantry-cache-key/v1');
});

const cases: Array<{ name: string; change: (i: CacheKeyInput) => CacheKeyInput; changes: boolean }> = [
  { name: 'file content (files digest)', change: (i) => ({ ...i, files: `sha256:${'c'.repeat(64)}` }), changes: true },
  { name: 'build arg value in scope', change: (i) => ({ ...i, buildArgs: { ...i.buildArgs, VERSION: '1.3' } }), changes: true },
  { name: 'build arg not in scope', change: (i) => ({ ...i, buildArgs: { ...i.buildArgs, GIT_SHA: 'cafef00d' } }), changes: false },
  { name: 'new build arg not in scope', change: (i) => ({ ...i, buildArgs: { ...i.buildArgs, BUILD_TIME: 'now' } }), changes: false },
  { name: 'arg coming into scope', change: (i) => ({ ...i, argsInScope: ['VERSION', 'GIT_SHA'] }), changes: true },
  { name: 'instruction text', change: (i) => ({ ...i, instruction: { ...i.instruction, args: ['app/', '/srv/app2'] } }), changes: true },
  { name: 'instruction kind', change: (i) => ({ ...i, instruction: { ...i.instruction, kind: 'add' } }), changes: true },
  { name: 'flag value', change: (i) => ({ ...i, instruction: { ...i.instruction, flags: { chmod: '0755', link: false } } }), changes: true },
  { name: 'flag order only', change: (i) => ({ ...i, instruction: { ...i.instruction, flags: { link: false, chmod: '0644' } } }), changes: false },
  { name: 'absent flag spelled undefined', change: (i) => ({ ...i, instruction: { ...i.instruction, flags: { ...i.instruction.flags, exclude: undefined } } }), changes: false },
  { name: 'shell form', change: (i) => ({ ...i, instruction: { ...i.instruction, shell: true } }), changes: true },
  { name: 'parent key', change: (i) => ({ ...i, parent: `sha256:${'d'.repeat(64)}` }), changes: true },
  { name: 'parent as bare hex', change: (i) => ({ ...i, parent: 'a'.repeat(64) }), changes: false },
  { name: 'platform', change: (i) => ({ ...i, platform: 'linux/arm64' }), changes: true },
  { name: 'platform spelled as object', change: (i) => ({ ...i, platform: { os: 'linux', architecture: 'amd64' } }), changes: false },
  { name: 'env value', change: (i) => ({ ...i, env: ['PATH=/usr/bin:/bin', 'HOME=/home/u'] }), changes: true },
  { name: 'env order', change: (i) => ({ ...i, env: ['HOME=/root', 'PATH=/usr/bin:/bin'] }), changes: false },
  { name: 'env as record', change: (i) => ({ ...i, env: { HOME: '/root', PATH: '/usr/bin:/bin' } }), changes: false },
  { name: 'cache mount id', change: (i) => ({ ...i, mounts: [{ type: 'cache', id: 'yarn', target: '/root/.npm' }] }), changes: true },
  { name: 'mount value moved to another field', change: (i) => ({ ...i, mounts: [{ type: 'cache', source: 'npm', target: '/root/.npm' }] }), changes: true },
  { name: 'heredoc body', change: (i) => ({ ...i, heredocs: [{ name: 'EOF', body: 'echo ho\n' }] }), changes: true },
  { name: 'heredoc quoted delimiter', change: (i) => ({ ...i, heredocs: [{ name: 'EOF', body: 'echo hi\n', expand: false }] }), changes: true },
  { name: 'extra input digest', change: (i) => ({ ...i, inputs: [{ name: 'from:build', digest: PARENT }] }), changes: true },
];

for (const c of cases) {
  test(`cache key ${c.changes ? 'changes' : 'does not change'} with ${c.name}`, () => {
    const k = variant(c.change);
    if (c.changes) assert.notEqual(k, cacheKey(base));
    else assert.equal(k, cacheKey(base));
  });
}

test('length framing keeps argument boundaries: ["a-b","c"] and ["a","b-c"] differ', () => {
  const a = variant((i) => ({ ...i, instruction: { kind: 'run', args: ['a-b', 'c'] } }));
  const b = variant((i) => ({ ...i, instruction: { kind: 'run', args: ['a', 'b-c'] } }));
  const c = variant((i) => ({ ...i, instruction: { kind: 'run', args: ['a-b-c'] } }));
  assert.equal(new Set([a, b, c]).size, 3);
});

test('a secret mount contributes its id, never a value (the input has no value field)', () => {
  const withSecret = variant((i) => ({ ...i, mounts: [{ type: 'secret', id: 'npmrc', target: '/run/secrets/npmrc' }] }));
  const otherId = variant((i) => ({ ...i, mounts: [{ type: 'secret', id: 'token', target: '/run/secrets/npmrc' }] }));
  assert.notEqual(withSecret, otherId);
});

test('a parent that is not a digest is rejected', () => {
  assert.throws(() => cacheKey({ ...base, parent: 'ubuntu:22.04' }), (e) => isGantryError(e, 'INVALID_ARGUMENT'));
  assert.match(cacheKey({ ...base, parent: 'scratch' }), /^sha256:/);
});

const durations: Array<[string, number | 'error']> = [
  ['336h', 336 * 3_600_000],
  ['24h', 86_400_000],
  ['1h30m', 5_400_000],
  ['1.5h', 5_400_000],
  ['90s', 90_000],
  ['250ms', 250],
  ['0', 0],
  ['14d', 'error'],
  ['', 'error'],
  ['h', 'error'],
  ['10', 'error'],
  ['-1h', 'error'],
];
for (const [text, want] of durations) {
  test(`Go duration "${text}" ${want === 'error' ? 'is rejected' : `is ${want} ms`}`, () => {
    if (want === 'error') assert.throws(() => parseGoDuration(text), (e) => isGantryError(e, 'INVALID_ARGUMENT'));
    else assert.equal(parseGoDuration(text), want);
  });
}
