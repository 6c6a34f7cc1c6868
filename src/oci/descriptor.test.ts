import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sha256 } from '../util/digest.js';
import { isGantryError } from '../util/errors.js';
import { blobPath, digestProblem, embeddedData, parseDescriptor } from './descriptor.js';

const HEX = 'a'.repeat(64);

test('digests follow the grammar, registered algorithms strictly', () => {
  const table: Array<[string, boolean]> = [
    [`sha256:${HEX}`, true],
    [`sha512:${'b'.repeat(128)}`, true],
    [`sha256:${HEX.toUpperCase()}`, false],
    [`sha256:${HEX.slice(1)}`, false],
    [`sha512:${HEX}`, false],
    ['sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564', true],
    ['multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8', true],
    ['sha256+foo+-b:abc', false],
    [`SHA256:${HEX}`, false],
    [`:${HEX}`, false],
    ['sha256', false],
    ['sha256:', false],
  ];
  for (const [d, ok] of table) assert.equal(digestProblem(d) === undefined, ok, d);
});

test('descriptors are validated field by field', () => {
  const good = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${HEX}`, size: 3 };
  assert.deepEqual(parseDescriptor(good), good);
  const bad: Array<[string, unknown, RegExp]> = [
    ['negative size', { ...good, size: -1 }, /size: must be a non-negative integer/],
    ['fractional size', { ...good, size: 1.5 }, /size/],
    ['string size', { ...good, size: '3' }, /size/],
    ['no digest', { mediaType: good.mediaType, size: 1 }, /digest: is required/],
    ['bad media type', { ...good, mediaType: 'application' }, /mediaType: "application" is not a valid media type/],
    ['relative url', { ...good, urls: ['layer.tar'] }, /urls\[0\]: "layer.tar" is not an absolute URI/],
    ['non-string annotation', { ...good, annotations: { a: 1 } }, /annotations.a: must be a string/],
    ['not an object', 'sha256:x', /must be a descriptor object/],
  ];
  for (const [name, value, re] of bad) {
    assert.throws(() => parseDescriptor(value), (e) => isGantryError(e, 'MANIFEST_INVALID') && re.test(e.message), name);
  }
});

test('embedded data must be padded base64 matching size and digest', () => {
  const bytes = Buffer.from('{}');
  const desc = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(bytes), size: 2, data: bytes.toString('base64') };
  assert.deepEqual(embeddedData(parseDescriptor(desc)), bytes);
  assert.throws(() => parseDescriptor({ ...desc, data: 'e30' }), /padding/);
  assert.throws(() => parseDescriptor({ ...desc, size: 3 }), /holds 2 bytes but size says 3/);
  assert.throws(() => parseDescriptor({ ...desc, digest: `sha256:${HEX}` }), /content has digest/);
});

test('blob paths come from valid digests only', () => {
  assert.equal(blobPath(`sha256:${HEX}`), `blobs/sha256/${HEX}`);
  assert.throws(() => blobPath('sha256:../../etc/passwd'), (e) => isGantryError(e, 'DIGEST_INVALID'));
});
