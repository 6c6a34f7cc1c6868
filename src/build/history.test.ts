import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exposeCreatedBy, fileOpCreatedBy, goDuration, goList, goQuote, goQuoteList, goQuoteRune, healthcheckCreatedBy } from './history.js';

// Expected values are what Go's fmt/strconv/time print for the same inputs (BuildKit formats
// history with fmt.Sprintf("%q"/"%v")).
describe('Go formatting used by BuildKit history', () => {
  const durations: Array<[number, string]> = [
    [0, '0s'],
    [999, '999ns'],
    [1500, '1.5µs'],
    [500e6, '500ms'],
    [1.5e9, '1.5s'],
    [30e9, '30s'],
    [90e9, '1m30s'],
    [300e9, '5m0s'],
    [3600e9, '1h0m0s'],
    [3723.5e9, '1h2m3.5s'],
  ];
  for (const [ns, want] of durations) it(`time.Duration(${ns}).String() = ${want}`, () => assert.equal(goDuration(ns), want));

  const quotes: Array<[string, string]> = [
    ['sh', '"sh"'],
    ['a"b', '"a\\"b"'],
    ['back\\slash', '"back\\\\slash"'],
    ['tab\there\nnl', '"tab\\there\\nnl"'],
    ['\x01\x7f', '"\\x01\\x7f"'],
    ['héllo', '"héllo"'],
    ['zero\u200bwidth', '"zero\\u200bwidth"'],
  ];
  for (const [s, want] of quotes) it(`strconv.Quote(${JSON.stringify(s)})`, () => assert.equal(goQuote(s), want));

  const runes: Array<[number, string]> = [
    [0, "'\\x00'"],
    [3, "'\\x03'"],
    [10, "'\\n'"],
    [39, "'\\''"],
    [65, "'A'"],
  ];
  for (const [n, want] of runes) it(`strconv.QuoteRune(${n})`, () => assert.equal(goQuoteRune(n), want));

  it('prints slices as %q and %v do', () => {
    assert.equal(goQuoteList(['/bin/sh', '-c', 'echo "hi"']), '["/bin/sh" "-c" "echo \\"hi\\""]');
    assert.equal(goQuoteList([]), '[]');
    assert.equal(goList(['/data', '/var/log']), '[/data /var/log]');
  });
});

describe('BuildKit created_by strings', () => {
  it('HEALTHCHECK prints the config struct pointer', () => {
    assert.equal(
      healthcheckCreatedBy({ test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'], interval: 30e9, timeout: 3e9, retries: 3 }),
      'HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "30s" "3s" "0s" "0s" \'\\x03\'}',
    );
    assert.equal(healthcheckCreatedBy({ test: ['NONE'] }), 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}');
  });

  it('EXPOSE prints a Go map with sorted keys', () => {
    assert.equal(exposeCreatedBy(['80/tcp', '443/tcp', '53/udp']), 'EXPOSE map[443/tcp:{} 53/udp:{} 80/tcp:{}]');
  });

  const fileOps: Array<[string, Parameters<typeof fileOpCreatedBy>[0], string]> = [
    ['plain COPY', { kind: 'copy', sources: ['dir'], contents: [], dest: '/dst' }, 'COPY dir /dst # buildkit'],
    ['ADD with flags', { kind: 'add', chown: 'app:app', chmod: '755', sources: ['a', 'b'], contents: [], dest: '/x/' }, 'ADD --chown=app:app --chmod=755 a b /x/ # buildkit'],
    ['COPY --parents', { kind: 'copy', parents: true, sources: ['a/b'], contents: [], dest: '/' }, 'COPY --parents a/b / # buildkit'],
    ['heredoc', { kind: 'copy', sources: [], contents: ['EOF'], dest: '/f' }, 'COPY <<EOF /f # buildkit'],
  ];
  for (const [name, op, want] of fileOps) it(name, () => assert.equal(fileOpCreatedBy(op), want));
});
