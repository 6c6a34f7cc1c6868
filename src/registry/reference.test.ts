import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReference, parseReference, parseRepository, registryApiHost, type Reference } from './reference.js';
import { isGantryError } from '../util/errors.js';

const D = 'sha256:' + 'a'.repeat(64);

test('parseReference applies docker defaults and keeps explicit parts', () => {
  const cases: Array<[string, Reference]> = [
    ['alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['alpine:3.20', { registry: 'docker.io', repository: 'library/alpine', tag: '3.20' }],
    ['bitnami/redis', { registry: 'docker.io', repository: 'bitnami/redis', tag: 'latest' }],
    ['docker.io/alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['index.docker.io/library/alpine:edge', { registry: 'docker.io', repository: 'library/alpine', tag: 'edge' }],
    ['ghcr.io/owner/app:v1.2.3', { registry: 'ghcr.io', repository: 'owner/app', tag: 'v1.2.3' }],
    ['ghcr.io/owner/a/b/c', { registry: 'ghcr.io', repository: 'owner/a/b/c', tag: 'latest' }],
    ['localhost/app', { registry: 'localhost', repository: 'app', tag: 'latest' }],
    ['localhost:5000/app:dev', { registry: 'localhost:5000', repository: 'app', tag: 'dev' }],
    ['127.0.0.1:5000/team/app', { registry: '127.0.0.1:5000', repository: 'team/app', tag: 'latest' }],
    ['[::1]:5000/app', { registry: '[::1]:5000', repository: 'app', tag: 'latest' }],
    ['registry.example.com/app', { registry: 'registry.example.com', repository: 'app', tag: 'latest' }],
    [`alpine@${D}`, { registry: 'docker.io', repository: 'library/alpine', digest: D }],
    [`ghcr.io/o/app:1.0@${D}`, { registry: 'ghcr.io', repository: 'o/app', tag: '1.0', digest: D }],
    ['Registry.Example.COM:443/app:MixedCase_Tag', { registry: 'registry.example.com:443', repository: 'app', tag: 'MixedCase_Tag' }],
    ['my-registry.io/a__b/c.d-e:1', { registry: 'my-registry.io', repository: 'a__b/c.d-e', tag: '1' }],
  ];
  for (const [input, want] of cases) assert.deepEqual(parseReference(input), want, input);
});

test('parseReference rejects invalid names with a message saying why', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /reference is empty/],
    ['   ', /reference is empty/],
    ['ghcr.io/Owner/App:1', /repository name must be lowercase/],
    ['MyUser/app', /repository name must be lowercase/],
    ['app:-bad', /bad tag "-bad"/],
    ['app:' + 'x'.repeat(129), /bad tag/],
    ['app@sha256:123', /bad digest "sha256:123"/],
    ['app@md5:' + 'a'.repeat(32), /bad digest/],
    ['ghcr.io/', /repository name is empty/],
    ['ghcr.io/a//b', /empty path component/],
    ['ghcr.io/a/-b', /path component "-b"/],
    ['ghcr.io/a/b_', /path component "b_"/],
    ['bad_host:5000/app', /not a valid registry/],
    ['a b', /whitespace/],
    ['ghcr.io/' + 'a'.repeat(260), /longer than 255/],
  ];
  for (const [input, re] of cases) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => isGantryError(err, 'REFERENCE_INVALID') && re.test(err.message),
      `${input} should fail with ${re}`,
    );
  }
});

test('parseReference can leave tag unset and formatReference round-trips', () => {
  assert.deepEqual(parseReference('ghcr.io/o/app', { defaultTag: null }), { registry: 'ghcr.io', repository: 'o/app' });
  for (const s of ['docker.io/library/alpine:latest', `ghcr.io/o/app:1@${D}`, `127.0.0.1:5000/x@${D}`]) {
    assert.equal(formatReference(parseReference(s)), s);
  }
});

test('parseRepository refuses tags and digests', () => {
  assert.deepEqual(parseRepository('localhost:5000/cache'), { registry: 'localhost:5000', repository: 'cache' });
  assert.deepEqual(parseRepository('ubuntu'), { registry: 'docker.io', repository: 'library/ubuntu' });
  assert.throws(() => parseRepository('ghcr.io/o/app:1'), /must not carry a tag/);
  assert.throws(() => parseRepository(`ghcr.io/o/app@${D}`), /must not carry a digest/);
});

test('registryApiHost maps Docker Hub names to registry-1.docker.io', () => {
  const cases: Array<[string, string]> = [
    ['docker.io', 'registry-1.docker.io'],
    ['index.docker.io', 'registry-1.docker.io'],
    ['ghcr.io', 'ghcr.io'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
  ];
  for (const [input, want] of cases) assert.equal(registryApiHost(input), want);
});
