import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGantryError } from '../util/errors.js';
import { encodePaxRecords, parsePaxRecords } from './pax.js';

describe('PAX records', () => {
  // Value lengths chosen so the record length crosses a digit boundary (the length counts itself).
  const lengths = [0, 1, 3, 4, 5, 88, 89, 90, 91, 92, 93, 990, 991, 992, 993, 994, 995, 996];
  for (const n of lengths) {
    it(`a ${n}-byte value encodes a self-consistent length and parses back`, () => {
      const value = Buffer.alloc(n, 0x61);
      const rec = encodePaxRecords([['path', value]]);
      const declared = Number(rec.toString('latin1', 0, rec.indexOf(0x20)));
      assert.equal(declared, rec.length);
      assert.deepEqual(parsePaxRecords(rec).get('path'), value);
    });
  }

  it('keeps binary values (non-UTF-8, newlines, NUL) intact', () => {
    const value = Buffer.from([0x00, 0x0a, 0xff, 0x80, 0x3d, 0x20]);
    const rec = encodePaxRecords([['SCHILY.xattr.security.capability', value], ['uid', Buffer.from('3000000')]]);
    const parsed = parsePaxRecords(rec);
    assert.deepEqual(parsed.get('SCHILY.xattr.security.capability'), value);
    assert.deepEqual(parsed.get('uid'), Buffer.from('3000000'));
  });

  const malformed: Array<[string, string]> = [
    ['no length', 'path=x\n'],
    ['length beyond the data', '99 path=x\n'],
    ['length not ending at a newline', '9 path=xy\n'],
    ['no "="', '9 pathxy\n'],
    ['non-digit length', '1a path=x\n'],
  ];
  for (const [name, text] of malformed) {
    it(`rejects a record with ${name}`, () => {
      assert.throws(() => parsePaxRecords(Buffer.from(text)), (err: unknown) => isGantryError(err, 'ARCHIVE_INVALID'));
    });
  }

  it('stops at NUL padding after the last record', () => {
    const rec = Buffer.concat([encodePaxRecords([['path', Buffer.from('a')]]), Buffer.alloc(20)]);
    assert.deepEqual([...parsePaxRecords(rec).keys()], ['path']);
  });
});
