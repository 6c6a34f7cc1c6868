import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGantryError } from '../util/errors.js';
import { checkOptionValue, escapeFstabField, formatFstab } from './fstab.js';
import { TailBuffer } from './output.js';

describe('fstab generation', () => {
  const cases: Array<[string, string]> = [
    ['/plain/path', '/plain/path'],
    ['/with space', '/with\\040space'],
    ['/tab\there', '/tab\\011here'],
    ['/new\nline', '/new\\012line'],
    ['/back\\slash', '/back\\134slash'],
    ['#hash', '\\043hash'],
    ['', 'none'],
  ];
  for (const [input, want] of cases) {
    it(`escapes ${JSON.stringify(input)}`, () => assert.equal(escapeFstabField(input), want));
  }

  it('writes one line per mount with options joined by commas', () => {
    const text = formatFstab([
      { source: 'proc', target: '/m/proc', fstype: 'proc', options: ['nosuid', 'nodev'] },
      { source: '/a b', target: '/m/x', fstype: 'none', options: [] },
    ]);
    assert.equal(text, 'proc /m/proc proc nosuid,nodev 0 0\n/a\\040b /m/x none defaults 0 0\n');
  });

  it('refuses option values that would split the overlay options', () => {
    assert.throws(() => checkOptionValue('lower directory', '/a,b'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'));
    assert.throws(() => checkOptionValue('lower directory', '/a:b', ':'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'));
    assert.doesNotThrow(() => checkOptionValue('upper directory', '/tmp/gantry-x/upper', ':'));
  });
});

describe('TailBuffer', () => {
  it('keeps the last lines across chunks and streams, including an unterminated last line', () => {
    const t = new TailBuffer(3);
    t.push('out', Buffer.from('one\ntw'));
    t.push('err', Buffer.from('E1\r\n'));
    t.push('out', Buffer.from('o\nthree\nfour'));
    assert.deepEqual(t.lines_(), ['two', 'three', 'four']);
  });
});
