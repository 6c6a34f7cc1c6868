import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDockerfile, parseInstruction, type RunInstruction } from '../dockerfile/index.js';
import type { ImageConfig } from '../oci/types.js';
import { cacheDirName } from './run-mounts.js';
import { resolveRunUser } from './run-user.js';
import { runCommand, runCreatedBy } from './run.js';

function runOf(text: string): RunInstruction {
  const parsed = parseDockerfile(`FROM scratch\n${text}\n`);
  const inst = parseInstruction(parsed.instructions[1]!);
  assert.equal(inst.kind, 'run');
  return inst as RunInstruction;
}

const cfg = (shell?: string[]): ImageConfig => ({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: shell ? { Shell: shell } : {} });

describe('runCommand builds the argv as BuildKit does', () => {
  const cases: Array<[string, string, ImageConfig, string[], { name: string; data: string }?]> = [
    ['shell form', 'RUN echo hi  >  /a', cfg(), ['/bin/sh', '-c', 'echo hi  >  /a']],
    ['exec form', 'RUN ["echo", "a b"]', cfg(), ['echo', 'a b']],
    ['SHELL', 'RUN echo $0', cfg(['/bin/bash', '-eu', '-c']), ['/bin/bash', '-eu', '-c', 'echo $0']],
    ['a whole-command heredoc is the script', 'RUN <<EOF\necho one\necho two\nEOF', cfg(), ['/bin/sh', '-c', 'echo one\necho two\n']],
    ['<<- strips leading tabs', 'RUN <<-EOF\n\techo tab\nEOF', cfg(), ['/bin/sh', '-c', 'echo tab\n']],
    ['a #! heredoc runs as a file', 'RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF', cfg(), ['/bin/sh', '-c', '/dev/pipes/EOF'], { name: 'EOF', data: '#!/usr/bin/env python3\nprint(1)\n' }],
    ['other heredocs go to the shell whole', 'RUN cat <<A > /x\nbody\nA', cfg(), ['/bin/sh', '-c', 'cat <<A > /x\nbody\nA']],
    ['a heredoc fed to a program', 'RUN <<EOF python3\nprint(2)\nEOF', cfg(), ['/bin/sh', '-c', '<<EOF python3\nprint(2)\nEOF']],
  ];
  for (const [name, text, c, want, script] of cases) {
    it(name, () => {
      const got = runCommand(runOf(text), c);
      assert.deepEqual(got.args, want);
      assert.deepEqual(got.script, script);
    });
  }
});

describe('runCreatedBy', () => {
  it('prefixes the ARGs in scope with their count', () => {
    assert.equal(runCreatedBy(['/bin/sh', '-c', 'make'], ['A=1', 'B=']), 'RUN |2 A=1 B= /bin/sh -c make # buildkit');
  });
  it('has no prefix without ARGs', () => {
    assert.equal(runCreatedBy(['echo', 'hi'], []), 'RUN echo hi # buildkit');
  });
});

describe('cacheDirName', () => {
  it('is stable, distinct per id and never a path', () => {
    assert.equal(cacheDirName('/root/.cache'), cacheDirName('/root/.cache'));
    assert.notEqual(cacheDirName('/a/b'), cacheDirName('/a_b'));
    for (const id of ['../../etc', '/', 'x/y', '']) assert.match(cacheDirName(id), /^[A-Za-z0-9-][A-Za-z0-9._-]*-[0-9a-f]{16}$/);
  });
});

describe('resolveRunUser resolves USER in the image as runc does', () => {
  let root: string;
  before(async () => {
    root = join(tmpdir(), `gantry-run-user-${process.pid}`);
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
    await writeFile(join(root, 'etc/group'), 'root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:root\naudio:x:29:app\n');
  });
  after(() => rm(root, { recursive: true, force: true }));

  const cases: Array<[string, { uid: number; gid: number; groups: number[]; home: string }]> = [
    ['', { uid: 0, gid: 0, groups: [], home: '/root' }],
    ['app', { uid: 1000, gid: 1001, groups: [50, 29], home: '/home/app' }],
    ['1000', { uid: 1000, gid: 1001, groups: [50, 29], home: '/home/app' }],
    ['app:staff', { uid: 1000, gid: 50, groups: [], home: '/home/app' }],
    ['app:7', { uid: 1000, gid: 7, groups: [], home: '/home/app' }],
    ['4242', { uid: 4242, gid: 0, groups: [], home: '/' }],
    ['4242:4243', { uid: 4242, gid: 4243, groups: [], home: '/' }],
    ['root', { uid: 0, gid: 0, groups: [10], home: '/root' }],
  ];
  for (const [spec, want] of cases) it(JSON.stringify(spec), async () => assert.deepEqual(await resolveRunUser(spec, root), want));

  it('rejects unknown names', async () => {
    await assert.rejects(resolveRunUser('nobody', root), /unable to find user nobody: no matching entries in passwd file/);
    await assert.rejects(resolveRunUser('app:nogroup', root), /unable to find group nogroup/);
  });
});
