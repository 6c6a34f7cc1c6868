import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseChallenges, pickChallenge, type Challenge } from './challenge.js';

test('parseChallenges reads schemes and quoted parameters, commas inside quotes included', () => {
  const cases: Array<[string | string[], Challenge[]]> = [
    [
      'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/app:pull,push"',
      [{ scheme: 'bearer', params: { realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:o/app:pull,push' } }],
    ],
    ['Basic realm="Registry Realm"', [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]],
    ['basic  realm = "x" ', [{ scheme: 'basic', params: { realm: 'x' } }]],
    [
      'Bearer realm="https://auth.docker.io/token", service="registry.docker.io", error="insufficient_scope"',
      [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', error: 'insufficient_scope' } }],
    ],
    [
      'Negotiate, Basic realm="a", Bearer realm="https://t/x",service=s',
      [
        { scheme: 'negotiate', params: {} },
        { scheme: 'basic', params: { realm: 'a' } },
        { scheme: 'bearer', params: { realm: 'https://t/x', service: 's' } },
      ],
    ],
    [['Basic realm="a"', 'Bearer realm="b"'], [{ scheme: 'basic', params: { realm: 'a' } }, { scheme: 'bearer', params: { realm: 'b' } }]],
    ['Bearer realm="a\\"b"', [{ scheme: 'bearer', params: { realm: 'a"b' } }]],
    ['Bearer Realm="x",SERVICE="y"', [{ scheme: 'bearer', params: { realm: 'x', service: 'y' } }]],
    ['', []],
  ];
  for (const [header, want] of cases) assert.deepEqual(parseChallenges(header), want, JSON.stringify(header));
  assert.deepEqual(parseChallenges(undefined), []);
});

test('pickChallenge prefers bearer, then basic, and ignores unknown schemes', () => {
  assert.equal(pickChallenge(parseChallenges('Negotiate, Basic realm="a", Bearer realm="b"'))?.scheme, 'bearer');
  assert.equal(pickChallenge(parseChallenges('Negotiate, Basic realm="a"'))?.scheme, 'basic');
  assert.equal(pickChallenge(parseChallenges('Negotiate')), undefined);
});
