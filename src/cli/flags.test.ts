import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags, UsageError, type FlagSpec } from './flags.js';
import { executorFlags } from './executor-flags.js';

const specs: FlagSpec[] = [
  { name: 'dockerfile', short: 'f', kind: 'string', default: 'Dockerfile', help: '' },
  { name: 'destination', short: 'd', kind: 'list', help: '' },
  { name: 'cache', kind: 'bool', help: '' },
  { name: 'no-push', kind: 'bool', env: 'KANIKO_NO_PUSH', help: '' },
  { name: 'tar-path', aliases: ['tarPath'], kind: 'string', help: '' },
  { name: 'registry-map', kind: 'map', mapSeparator: ';', env: 'KANIKO_REGISTRY_MAP', help: '' },
  { name: 'registry-mirror', kind: 'list', env: 'KANIKO_REGISTRY_MIRROR', help: '' },
];

describe('flag parsing follows Go pflag as Kaniko recipes use it', () => {
  const cases: Array<{ name: string; argv: string[]; env?: Record<string, string>; expect: Record<string, unknown>; positionals?: string[] }> = [
    { name: '--flag=value and --flag value', argv: ['--dockerfile=a', '-d', 'r/x:1', '--destination', 'r/x:2'], expect: { dockerfile: 'a', destination: ['r/x:1', 'r/x:2'] } },
    { name: 'shorthand with = and glued', argv: ['-f=b', '-dr/y'], expect: { dockerfile: 'b', destination: ['r/y'] } },
    { name: 'bool alone is true', argv: ['--cache'], expect: { cache: true } },
    { name: 'Go-style bool values', argv: ['--cache=false', '--no-push=true'], expect: { cache: false, 'no-push': true } },
    { name: '--no-push is a flag of its own, not a negation', argv: ['--no-push'], expect: { 'no-push': true } },
    { name: 'a bool never takes the next word', argv: ['--cache', 'false'], expect: { cache: true }, positionals: ['false'] },
    { name: 'deprecated alias', argv: ['--tarPath=/o.tar'], expect: { 'tar-path': '/o.tar' } },
    { name: 'values keep = and leading zeros', argv: ['-d', 'a=b=c', '--dockerfile=007'], expect: { destination: ['a=b=c'], dockerfile: '007' } },
    { name: 'map with ; separator accumulates', argv: ['--registry-map=index.docker.io=m1;index.docker.io=m2', '--registry-map', 'gcr.io=m3'], expect: { 'registry-map': { 'index.docker.io': ['m1', 'm2'], 'gcr.io': ['m3'] } } },
    { name: 'env fills flags not given', argv: [], env: { KANIKO_NO_PUSH: 'true', KANIKO_REGISTRY_MIRROR: 'm1,m2', KANIKO_REGISTRY_MAP: 'a=b' }, expect: { 'no-push': true, 'registry-mirror': ['m1', 'm2'], 'registry-map': { a: ['b'] } } },
    { name: 'flag wins over env', argv: ['--registry-mirror=x'], env: { KANIKO_REGISTRY_MIRROR: 'm1' }, expect: { 'registry-mirror': ['x'] } },
    { name: '-- ends flags', argv: ['--', '--cache'], expect: { cache: false }, positionals: ['--cache'] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const p = parseFlags(c.argv, specs, c.env ?? {});
      for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(p.values[k], v, k);
      assert.deepEqual(p.positionals, c.positionals ?? []);
    });
  }

  const errors: Array<{ argv: string[]; message: RegExp; hint?: RegExp }> = [
    { argv: ['--destinaton=x'], message: /unknown flag: --destinaton/, hint: /did you mean --destination\?/ },
    { argv: ['--cache=maybe'], message: /invalid value "maybe" for flag --cache/ },
    { argv: ['--dockerfile'], message: /flag needs an argument: --dockerfile/ },
    { argv: ['-z'], message: /unknown shorthand flag: 'z'/ },
    { argv: ['--registry-map=nokey'], message: /expected key=value/ },
  ];
  for (const e of errors) {
    test(`rejects ${e.argv.join(' ')}`, () => {
      assert.throws(() => parseFlags(e.argv, specs, {}), (err: unknown) => {
        assert.ok(err instanceof UsageError);
        assert.match(err.message, e.message);
        if (e.hint) assert.match(err.hint ?? '', e.hint);
        return true;
      });
    });
  }
});

describe('every Kaniko executor flag parses', () => {
  test('each flag in both --flag=value and --flag value forms', (t) => {
    let n = 0;
    for (const s of executorFlags) {
      for (const name of [s.name, ...(s.aliases ?? [])]) {
        const value = s.kind === 'bool' ? 'true' : s.kind === 'map' ? 'k=v' : 'x';
        const a = parseFlags([`--${name}=${value}`], executorFlags, {});
        assert.ok(a.given.has(s.name), `--${name}=${value}`);
        if (s.kind !== 'bool') {
          const b = parseFlags([`--${name}`, value], executorFlags, {});
          assert.deepEqual(b.values[s.name], a.values[s.name], `--${name} ${value}`);
        }
        n++;
      }
    }
    t.diagnostic(`executor flags parsed: ${n} spellings of ${executorFlags.length} flags`);
    assert.ok(n >= 60);
  });
});
