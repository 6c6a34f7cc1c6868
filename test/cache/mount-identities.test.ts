/**
 * The cache-key identity of RUN mounts (src/build/run-mounts.ts mountIdentities): options as
 * written, a bind mount's content digest from its source, never a secret value, and no identity
 * at all when a bind's content cannot be named.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cacheKey } from '../../src/cache/index.js';
import type { RunMount } from '../../src/dockerfile/index.js';
import { mountIdentities, type BindDigest } from '../../src/build/run-mounts.js';

const bind = (over: Partial<RunMount> = {}): RunMount => ({ type: 'bind', readOnly: true, required: false, target: '/mnt', ...over });

/** Answers like the executor would: context digests by source, one stage with a key, one without. */
function digests(): { fn: BindDigest; calls: Array<[string | undefined, string]> } {
  const calls: Array<[string | undefined, string]> = [];
  const fn: BindDigest = async (from, source) => {
    calls.push([from, source]);
    if (from === undefined) return `sha256:${(source === '/' ? 'a' : 'b').repeat(64)}`;
    return from === 'keyed' ? `sha256:${'c'.repeat(64)}` : undefined;
  };
  return { fn, calls };
}

const cases: Array<{ name: string; mount: RunMount; call: [string | undefined, string] | undefined; digest: string | undefined | 'uncached' }> = [
  { name: 'context bind without source', mount: bind(), call: [undefined, '/'], digest: `sha256:${'a'.repeat(64)}` },
  { name: 'context bind with from=""', mount: bind({ from: '', source: 'src' }), call: [undefined, 'src'], digest: `sha256:${'b'.repeat(64)}` },
  { name: 'bind from a keyed stage', mount: bind({ from: 'keyed', source: '/out' }), call: ['keyed', '/out'], digest: `sha256:${'c'.repeat(64)}` },
  { name: 'bind from a stage without key', mount: bind({ from: 'unkeyed' }), call: ['unkeyed', '/'], digest: 'uncached' },
  { name: 'cache mount', mount: { type: 'cache', readOnly: false, required: false, target: '/c', id: 'x', sharing: 'locked', uid: 1, gid: 2, mode: 0o700 }, call: undefined, digest: undefined },
];

for (const c of cases) {
  test(`mount identity of a ${c.name}`, async () => {
    const d = digests();
    const ids = await mountIdentities([c.mount], d.fn);
    assert.deepEqual(d.calls, c.call ? [c.call] : []);
    if (c.digest === 'uncached') {
      assert.equal(ids, undefined);
      return;
    }
    assert.ok(ids);
    assert.equal(ids[0]!.digest, c.digest);
    for (const f of ['type', 'target', 'id', 'source', 'from', 'readOnly', 'sharing', 'mode', 'uid', 'gid', 'required'] as const) assert.equal(ids[0]![f], c.mount[f], f);
  });
}

test('a cache mount option that changes what RUN sees (uid, mode) changes the key', async () => {
  const key = async (m: RunMount) => cacheKey({ parent: 'scratch', platform: 'linux/amd64', instruction: { kind: 'run', args: ['true'] }, mounts: (await mountIdentities([m], digests().fn))! });
  const m: RunMount = { type: 'cache', readOnly: false, required: false, target: '/c' };
  const keys = await Promise.all([key(m), key({ ...m, uid: 1000 }), key({ ...m, mode: 0o700 })]);
  assert.equal(new Set(keys).size, 3);
});

test('a secret mount contributes its id and env name, and the identity has no room for a value', async () => {
  const ids = await mountIdentities([{ type: 'secret', readOnly: true, required: true, id: 'tok', env: 'TOKEN' }], digests().fn);
  assert.deepEqual(ids, [{ type: 'secret', readOnly: true, required: true, id: 'tok', env: 'TOKEN' }]);
});
