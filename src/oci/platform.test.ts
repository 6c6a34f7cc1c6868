import assert from 'node:assert/strict';
import { arch } from 'node:os';
import { test } from 'node:test';
import { isGantryError } from '../util/errors.js';
import { compatiblePlatforms, formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformMatches, selectManifest } from './platform.js';
import { MediaType } from './types.js';
import type { ImageIndex, Platform } from './types.js';

test('platform strings parse into normalized platforms', () => {
  const table: Array<[string, string]> = [
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['Linux/X86-64', 'linux/amd64'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/arm64/8', 'linux/arm64'],
    ['linux/arm64/v9.0', 'linux/arm64/v9'],
    ['linux/arm64/v8.2', 'linux/arm64/v8.2'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/6', 'linux/arm/v6'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/armel', 'linux/arm/v6'],
    ['linux/i386', 'linux/386'],
    ['linux/ppc64le', 'linux/ppc64le'],
    ['macos/arm64', 'darwin/arm64'],
    ['arm64', 'linux/arm64'],
    ['windows(10.0.17763.1)/amd64', 'windows(10.0.17763.1)/amd64'],
  ];
  for (const [input, want] of table) assert.equal(formatPlatform(parsePlatform(input)), want, input);
  for (const bad of ['', 'linux/', 'linux/amd64/v1/x', 'linux(/amd64', 'linux/amd 64', 'frobnicator']) {
    assert.throws(() => parsePlatform(bad), (e) => isGantryError(e, 'INVALID_ARGUMENT') && e.hint !== undefined, bad);
  }
  // A lone OS takes the host's architecture.
  assert.equal(parsePlatform('linux').architecture, hostPlatform().architecture);
});

test('the host platform is a Linux platform in Go names', () => {
  const host = hostPlatform();
  assert.equal(host.os, 'linux');
  const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' };
  if (expected[arch()]) assert.equal(host.architecture, expected[arch()]);
  assert.deepEqual(normalizePlatform(host), host);
});

test('matching follows containerd: exact first, then what the platform can also run', () => {
  const fmt = (w: string) => compatiblePlatforms(parsePlatform(w)).map(formatPlatform);
  assert.deepEqual(fmt('linux/amd64'), ['linux/amd64', 'linux/386']);
  assert.deepEqual(fmt('linux/amd64/v3'), ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']);
  assert.deepEqual(fmt('linux/arm/v7'), ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
  assert.deepEqual(fmt('linux/arm/v5'), ['linux/arm/v5']);
  assert.deepEqual(fmt('linux/arm64'), ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
  assert.deepEqual(fmt('linux/arm64/v8.2').slice(0, 3), ['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64']);
  assert.deepEqual(compatiblePlatforms(parsePlatform('linux/arm/v7'), 'strict').map(formatPlatform), ['linux/arm/v7']);

  const table: Array<[string, Platform, boolean]> = [
    ['linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }, true],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64' }, true],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm', variant: 'v6' }, true],
    ['linux/arm/v6', { os: 'linux', architecture: 'arm', variant: 'v7' }, false],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: 'v7' }, true],
    ['linux/amd64', { os: 'linux', architecture: 'arm64' }, false],
    ['linux/amd64', { os: 'windows', architecture: 'amd64' }, false],
    ['linux/amd64', { os: 'linux', architecture: 'x86_64' }, true],
  ];
  for (const [want, have, ok] of table) assert.equal(platformMatches(parsePlatform(want), have), ok, `${want} vs ${formatPlatform(have)}`);
});

test('selectManifest picks the best entry and lists what exists when none fits', () => {
  const entry = (digit: string, platform?: Platform) => ({
    mediaType: MediaType.OciManifest,
    digest: `sha256:${digit.repeat(64)}`,
    size: 1,
    ...(platform ? { platform } : {}),
  });
  const index: ImageIndex = {
    schemaVersion: 2,
    manifests: [
      entry('0', { os: 'unknown', architecture: 'unknown' }),
      entry('1', { os: 'linux', architecture: 'arm', variant: 'v6' }),
      entry('2', { os: 'linux', architecture: 'amd64' }),
      entry('3', { os: 'linux', architecture: 'arm', variant: 'v7' }),
      entry('4', { os: 'linux', architecture: 'arm64', variant: 'v8' }),
      entry('5'),
    ],
  };
  const pick = (p: string) => selectManifest(index, parsePlatform(p)).digest[7];
  assert.equal(pick('linux/arm/v7'), '3', 'exact beats compatible');
  assert.equal(pick('linux/arm/v6'), '1');
  assert.equal(pick('linux/aarch64'), '4');
  assert.equal(pick('linux/x86_64'), '2');
  assert.equal(selectManifest(index, parsePlatform('linux/arm/v6'), { mode: 'strict' }).digest[7], '1', 'strict mode still finds exact');
  assert.throws(
    () => selectManifest(index, parsePlatform('linux/s390x')),
    (e) => isGantryError(e, 'PLATFORM_NOT_FOUND') && e.message.includes('(available: unknown/unknown, linux/arm/v6, linux/amd64, linux/arm/v7, linux/arm64)'),
  );
  assert.throws(() => selectManifest(index, parsePlatform('linux/arm/v5'), { mode: 'strict' }), (e) => isGantryError(e, 'PLATFORM_NOT_FOUND'));
});
