import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from './flags.js';
import { parseAddHosts, parseSecrets } from './run-flags.js';

describe('--secret', () => {
  const cases: Array<[string, NodeJS.ProcessEnv, Record<string, { src?: string; env?: string }>]> = [
    ['id=npmrc,src=/home/u/.npmrc', {}, { npmrc: { src: '/home/u/.npmrc' } }],
    ['id=npmrc,source=rel/file', {}, { npmrc: { src: 'rel/file' } }],
    ['id=tok,env=GH_TOKEN', {}, { tok: { env: 'GH_TOKEN' } }],
    ['type=env,id=tok,src=GH_TOKEN', {}, { tok: { env: 'GH_TOKEN' } }],
    ['type=env,id=TOKEN', {}, { TOKEN: { env: 'TOKEN' } }],
    ['id=TOKEN', { TOKEN: 'x' }, { TOKEN: { env: 'TOKEN' } }],
    ['id=file.txt', {}, { 'file.txt': { src: 'file.txt' } }],
  ];
  for (const [text, env, want] of cases) it(text, () => assert.deepEqual(parseSecrets([text], env), want));

  for (const bad of ['src=/x', 'id=a,src=/x,env=B', 'id=a,type=ssh', 'id=a,bogus=1', 'justtext']) {
    it(`rejects ${bad}`, () => assert.throws(() => parseSecrets([bad], {}), UsageError));
  }
});

describe('--add-host', () => {
  it('takes host:ip, IPv6 included', () => {
    assert.deepEqual(parseAddHosts(['db:10.0.0.5', 'v6:[::1]', 'x:fe80::2']), [
      { host: 'db', ip: '10.0.0.5' },
      { host: 'v6', ip: '::1' },
      { host: 'x', ip: 'fe80::2' },
    ]);
  });
  for (const bad of ['db', 'db:', ':1.2.3.4', 'a b:1.2.3.4', 'db:not-an-ip']) it(`rejects ${bad}`, () => assert.throws(() => parseAddHosts([bad]), UsageError));
});
