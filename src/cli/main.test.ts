import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main, type CliIO } from './main.js';

function capture(env: NodeJS.ProcessEnv = {}): CliIO & { out: string; err: string } {
  const io = { out: '', err: '', env, stdout: (t: string) => void (io.out += t), stderr: (t: string) => void (io.err += t) };
  return io;
}

describe('gantry command line', () => {
  test('unknown command suggests the closest one and exits 2', async () => {
    const io = capture();
    assert.equal(await main(['exectuor'], io), 2);
    assert.match(io.err, /unknown command "exectuor"/);
    assert.match(io.err, /did you mean "gantry executor"/);
  });

  test('executor refuses a flag whose feature is missing, naming it, with exit 2', async () => {
    const io = capture();
    assert.equal(await main(['executor', '--context=.', '--no-push', '--single-snapshot'], io), 2);
    assert.match(io.err, /flag --single-snapshot is not supported yet/);
  });

  test('executor refuses --compressed-caching=false: gantry never recompresses', async () => {
    const io = capture();
    assert.equal(await main(['executor', '--context=.', '--no-push', '--compressed-caching=false'], io), 2);
    assert.match(io.err, /--compressed-caching=false is not supported/);
  });

  test('executor without a destination says what to pass', async () => {
    const io = capture();
    assert.equal(await main(['executor', '--context=.'], io), 2);
    assert.match(io.err, /no --destination given/);
    assert.match(io.err, /--no-push/);
  });

  test('executor --help lists Kaniko flags', async () => {
    const io = capture();
    assert.equal(await main(['executor', '--help'], io), 0);
    for (const f of ['--destination', '--registry-mirror', '--image-name-tag-with-digest-file', '--context-sub-path']) assert.ok(io.out.includes(f), f);
  });

  test('build --call=targets, outline and check read the Dockerfile without building', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gantry-cli-'));
    try {
      await writeFile(join(dir, 'Dockerfile'), '# base stage\nFROM scratch AS base\nARG VERSION=1\nCOPY a /a\n\n# the app\nFROM base AS app\nCOPY b /b\n');
      let io = capture();
      assert.equal(await main(['build', '--call=targets', dir], io), 0, io.err);
      assert.match(io.out, /base/);
      assert.match(io.out, /app \(default\)/);
      io = capture();
      assert.equal(await main(['build', '--call=outline', '--target=base', dir], io), 0, io.err);
      assert.match(io.out, /VERSION/);
      io = capture();
      assert.equal(await main(['build', '--call=check', dir], io), 0, io.err);

      await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY --bogus=1 a /a\n');
      io = capture();
      assert.equal(await main(['build', '--call=check', dir], io), 1);
      assert.match(io.out + io.err, /Dockerfile:2/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
