import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMirrorTarget, pullSources, type PullSource } from './mirrors.js';
import { resolveOptions, type RegistryOptions } from './options.js';
import { parseReference } from './reference.js';

test('parseMirrorTarget splits host and repository prefix', () => {
  assert.deepEqual(parseMirrorTarget('mirror.gcr.io'), { registry: 'mirror.gcr.io', prefix: '' });
  assert.deepEqual(parseMirrorTarget('harbor.local/proxy/hub/'), { registry: 'harbor.local', prefix: 'proxy/hub/' });
  assert.deepEqual(parseMirrorTarget('https://Mirror.Example:5000/x'), { registry: 'mirror.example:5000', prefix: 'x/' });
});

test('pullSources orders maps, mirrors and the origin like Kaniko', () => {
  const cases: Array<{ name: string; ref: string; opts: RegistryOptions; want: PullSource[] }> = [
    {
      name: 'no configuration: origin only',
      ref: 'alpine',
      opts: {},
      want: [{ registry: 'docker.io', repository: 'library/alpine', via: 'origin' }],
    },
    {
      name: 'mirrors apply to Docker Hub, with path prefix, then origin',
      ref: 'alpine:3',
      opts: { mirrors: ['mirror.gcr.io', 'harbor.local/hub'] },
      want: [
        { registry: 'mirror.gcr.io', repository: 'library/alpine', via: 'mirror' },
        { registry: 'harbor.local', repository: 'hub/library/alpine', via: 'mirror' },
        { registry: 'docker.io', repository: 'library/alpine', via: 'origin' },
      ],
    },
    {
      name: 'mirrors do not apply to other registries',
      ref: 'ghcr.io/o/app',
      opts: { mirrors: ['mirror.gcr.io'] },
      want: [{ registry: 'ghcr.io', repository: 'o/app', via: 'origin' }],
    },
    {
      name: 'maps apply to the registry they name (index.docker.io == docker.io), before mirrors',
      ref: 'docker.io/bitnami/redis',
      opts: { registryMaps: { 'index.docker.io': ['cache.local:5000/dh'] }, mirrors: ['mirror.gcr.io'] },
      want: [
        { registry: 'cache.local:5000', repository: 'dh/bitnami/redis', via: 'map' },
        { registry: 'mirror.gcr.io', repository: 'bitnami/redis', via: 'mirror' },
        { registry: 'docker.io', repository: 'bitnami/redis', via: 'origin' },
      ],
    },
    {
      name: 'several maps for one registry keep their order',
      ref: 'quay.io/prometheus/node-exporter',
      opts: { registryMaps: { 'quay.io': ['a.local', 'b.local/q'] } },
      want: [
        { registry: 'a.local', repository: 'prometheus/node-exporter', via: 'map' },
        { registry: 'b.local', repository: 'q/prometheus/node-exporter', via: 'map' },
        { registry: 'quay.io', repository: 'prometheus/node-exporter', via: 'origin' },
      ],
    },
    {
      name: 'skipDefaultRegistryFallback drops the origin when a mapping applied',
      ref: 'alpine',
      opts: { mirrors: ['mirror.gcr.io'], skipDefaultRegistryFallback: true },
      want: [{ registry: 'mirror.gcr.io', repository: 'library/alpine', via: 'mirror' }],
    },
    {
      name: 'skipDefaultRegistryFallback keeps the origin when nothing applied',
      ref: 'ghcr.io/o/app',
      opts: { mirrors: ['mirror.gcr.io'], skipDefaultRegistryFallback: true },
      want: [{ registry: 'ghcr.io', repository: 'o/app', via: 'origin' }],
    },
  ];
  for (const c of cases) assert.deepEqual(pullSources(parseReference(c.ref), resolveOptions(c.opts)), c.want, c.name);
});
