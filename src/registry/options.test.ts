import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGantryError } from '../util/errors.js';
import { allowsPlainHttp, resolveOptions, tlsSettingsFor } from './options.js';
import { nextLink } from './tags.js';

test('resolveOptions normalises registry keys and validates numbers', async () => {
  const o = resolveOptions({
    insecure: ['Index.Docker.IO', 'reg.local:5000'],
    skipTlsVerify: ['docker.io'],
    registryMaps: { 'index.docker.io': ['a.local'], 'docker.io': ['b.local'] },
  });
  assert.deepEqual([...(o.insecure as Set<string>)], ['docker.io', 'reg.local:5000']);
  assert.deepEqual(o.registryMaps.get('docker.io'), ['a.local', 'b.local']);
  assert.equal((await tlsSettingsFor(o, 'index.docker.io')).rejectUnauthorized, false);
  assert.equal((await tlsSettingsFor(o, 'ghcr.io')).rejectUnauthorized, true);
  assert.equal(resolveOptions(o), o, 'resolved options pass through');
  for (const bad of [{ retries: -1 }, { chunkSize: 1.5 }, { concurrency: 0 }]) {
    assert.throws(() => resolveOptions(bad), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'), JSON.stringify(bad));
  }
});

test('allowsPlainHttp: insecure registries and loopback only', () => {
  const o = resolveOptions({ insecure: ['reg.local:5000'] });
  const cases: Array<[string, boolean]> = [
    ['reg.local:5000', true],
    ['reg.local', false],
    ['localhost:5000', true],
    ['127.0.0.1:5000', true],
    ['[::1]:5000', true],
    ['10.0.0.5:5000', false],
    ['ghcr.io', false],
  ];
  for (const [r, want] of cases) assert.equal(allowsPlainHttp(o, r), want, r);
  assert.equal(allowsPlainHttp(resolveOptions({ insecure: true }), 'ghcr.io'), true);
});

test('tlsSettingsFor names the flag when a certificate file is missing', async () => {
  const o = resolveOptions({ caFiles: { 'reg.local': ['/nonexistent/ca.pem'] }, clientCerts: { 'mtls.local': { cert: '/nonexistent/c.pem', key: '/nonexistent/k.pem' } } });
  await assert.rejects(tlsSettingsFor(o, 'reg.local'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT') && /--registry-certificate/.test(e.hint ?? ''));
  await assert.rejects(tlsSettingsFor(o, 'mtls.local'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT') && /--registry-client-cert/.test(e.hint ?? ''));
});

test('nextLink finds rel="next" among several links, relative or absolute', () => {
  const base = new URL('https://ghcr.io/v2/o/app/tags/list?n=100');
  const cases: Array<[string | undefined, string | undefined]> = [
    ['</v2/o/app/tags/list?last=b&n=100>; rel="next"', 'https://ghcr.io/v2/o/app/tags/list?last=b&n=100'],
    ['<https://other.example/x?a=1,2>; rel="prev", <https://ghcr.io/v2/o/app/tags/list?last=c>; rel=next', 'https://ghcr.io/v2/o/app/tags/list?last=c'],
    ['</x>; rel="prev"', undefined],
    [undefined, undefined],
  ];
  for (const [link, want] of cases) assert.equal(nextLink(link, base)?.href, want, String(link));
});
