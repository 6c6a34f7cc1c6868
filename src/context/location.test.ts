import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGantryError } from '../util/errors.js';
import { parseContextLocation, redactLocation, type ContextLocation } from './location.js';
import { parseGitOptions, type GitCloneOptions } from './git-options.js';
import { gitCredentials, redactSecrets } from './git-clone.js';
import { parseGitmodules, resolveSubmoduleUrl } from './git-submodules.js';

const SHA = '0123456789abcdef0123456789abcdef01234567';

const cases: Array<{ name: string; input: string; env?: NodeJS.ProcessEnv; want: ContextLocation }> = [
  { name: 'plain relative path', input: 'ctx', want: { kind: 'dir', path: 'ctx' } },
  { name: 'plain absolute path', input: '/workspace/', want: { kind: 'dir', path: '/workspace/' } },
  { name: 'dir:// scheme', input: 'dir:///src/app', want: { kind: 'dir', path: '/src/app' } },
  { name: 'tar:// file', input: 'tar://ctx.tar.gz', want: { kind: 'tar', path: 'ctx.tar.gz' } },
  { name: 'tar://stdin', input: 'tar://stdin', want: { kind: 'stdin' } },
  { name: 'dash is stdin', input: '-', want: { kind: 'stdin' } },
  {
    name: 'kaniko git:// with ref and commit, https by default',
    input: `git://github.com/owner/repo#refs/heads/main#${SHA}`,
    want: { kind: 'git', form: 'kaniko', git: { url: 'https://github.com/owner/repo', ref: 'refs/heads/main', commit: SHA } },
  },
  {
    name: 'kaniko git:// over http when GIT_PULL_METHOD=http',
    input: 'git://127.0.0.1:8080/repo.git#refs/tags/v1',
    env: { GIT_PULL_METHOD: 'http' },
    want: { kind: 'git', form: 'kaniko', git: { url: 'http://127.0.0.1:8080/repo.git', ref: 'refs/tags/v1' } },
  },
  {
    name: 'kaniko ignores an unknown GIT_PULL_METHOD',
    input: 'git://example.com/r',
    env: { GIT_PULL_METHOD: 'ftp' },
    want: { kind: 'git', form: 'kaniko', git: { url: 'https://example.com/r' } },
  },
  {
    name: 'kaniko git:// with a SHA as the ref pins the commit',
    input: `git://example.com/r#${SHA}`,
    want: { kind: 'git', form: 'kaniko', git: { url: 'https://example.com/r', commit: SHA } },
  },
  {
    name: 'kaniko git:// pull request ref',
    input: 'git://github.com/o/r#refs/pull/42/head',
    want: { kind: 'git', form: 'kaniko', git: { url: 'https://github.com/o/r', ref: 'refs/pull/42/head' } },
  },
  {
    name: 'git:// with BuildKit ref:subdir',
    input: 'git://example.com/r.git#main:docker/app',
    want: { kind: 'git', form: 'kaniko', git: { url: 'https://example.com/r.git', ref: 'main', subdir: 'docker/app' } },
  },
  {
    name: 'buildkit https .git without fragment',
    input: 'https://github.com/o/r.git',
    want: { kind: 'git', form: 'buildkit', git: { url: 'https://github.com/o/r.git' } },
  },
  {
    name: 'buildkit #ref',
    input: 'https://github.com/o/r.git#v1.2',
    want: { kind: 'git', form: 'buildkit', git: { url: 'https://github.com/o/r.git', ref: 'v1.2' } },
  },
  {
    name: 'buildkit #ref:subdir over http',
    input: 'http://127.0.0.1:9/repo.git#main:sub/dir',
    want: { kind: 'git', form: 'buildkit', git: { url: 'http://127.0.0.1:9/repo.git', ref: 'main', subdir: 'sub/dir' } },
  },
  {
    name: 'buildkit #:subdir keeps the default branch',
    input: 'https://github.com/o/r.git#:sub',
    want: { kind: 'git', form: 'buildkit', git: { url: 'https://github.com/o/r.git', subdir: 'sub' } },
  },
  {
    name: 'buildkit full SHA fragment pins the commit',
    input: `https://github.com/o/r.git#${SHA}:x`,
    want: { kind: 'git', form: 'buildkit', git: { url: 'https://github.com/o/r.git', commit: SHA, subdir: 'x' } },
  },
  {
    name: 'credentials in the URL are split off',
    input: 'https://user:s3cret@git.example.com/o/r.git#main',
    want: { kind: 'git', form: 'buildkit', git: { url: 'https://git.example.com/o/r.git', ref: 'main', urlCredentials: { username: 'user', password: 's3cret' } } },
  },
  {
    name: 'github.com/ shorthand',
    input: 'github.com/o/r#dev',
    want: { kind: 'dir-or-git', path: 'github.com/o/r#dev', git: { url: 'https://github.com/o/r', ref: 'dev' } },
  },
  { name: 'other https URL is a remote tarball', input: 'https://example.com/ctx.tar.gz', want: { kind: 'url', url: 'https://example.com/ctx.tar.gz' } },
];

for (const c of cases) {
  test(`location: ${c.name}`, () => {
    assert.deepEqual(parseContextLocation(c.input, c.env ?? {}), c.want);
  });
}

const rejected: Array<{ input: string; code: string; mentions: string }> = [
  { input: '', code: 'INVALID_ARGUMENT', mentions: 'empty' },
  { input: 'gs://bucket/ctx.tar.gz', code: 'UNSUPPORTED', mentions: 'gs://' },
  { input: 's3://bucket/ctx.tar.gz', code: 'UNSUPPORTED', mentions: 's3://' },
  { input: 'git@github.com:o/r.git', code: 'UNSUPPORTED', mentions: 'SSH' },
  { input: 'ssh://git@github.com/o/r.git', code: 'UNSUPPORTED', mentions: 'SSH' },
  { input: 'https://acct.blob.core.windows.net/c/ctx.tar.gz', code: 'UNSUPPORTED', mentions: 'Azure' },
  { input: 'ftp://example.com/x', code: 'UNSUPPORTED', mentions: 'ftp://' },
  { input: 'git://h/r#a#b#c', code: 'CONTEXT_INVALID', mentions: 'at most two' },
  { input: 'git://h/r#main#not-a-sha', code: 'CONTEXT_INVALID', mentions: 'not a commit' },
  { input: 'tar://', code: 'CONTEXT_INVALID', mentions: 'tar://' },
];

for (const r of rejected) {
  test(`location: rejects ${JSON.stringify(r.input)} with ${r.code}`, () => {
    assert.throws(
      () => parseContextLocation(r.input, {}),
      (err: unknown) => isGantryError(err) && err.code === r.code && (err.message + (err.hint ?? '')).includes(r.mentions),
    );
  });
}

test('location: redaction removes userinfo from messages', () => {
  assert.equal(redactLocation('https://u:p@h/r.git#main'), 'https://***@h/r.git#main');
  assert.equal(redactLocation('/plain/path'), '/plain/path');
  assert.throws(
    () => parseContextLocation('ftp://user:hunter22@h/x', {}),
    (err: unknown) => isGantryError(err) && !err.message.includes('hunter22'),
  );
});

const gitOptionCases: Array<{ input: string | string[] | undefined; want: GitCloneOptions }> = [
  { input: undefined, want: { singleBranch: false, recurseSubmodules: false, insecureSkipTls: false } },
  {
    input: 'branch=dev,single-branch=true,recurse-submodules=false,insecure-skip-tls=T',
    want: { branch: 'dev', singleBranch: true, recurseSubmodules: false, insecureSkipTls: true },
  },
  { input: ['branch=a', 'branch=b', 'recurse-submodules=1'], want: { branch: 'b', singleBranch: false, recurseSubmodules: true, insecureSkipTls: false } },
  { input: 'branch=', want: { singleBranch: false, recurseSubmodules: false, insecureSkipTls: false } },
];

for (const c of gitOptionCases) {
  test(`--git ${JSON.stringify(c.input)}`, () => {
    assert.deepEqual(parseGitOptions(c.input), c.want);
  });
}

for (const bad of ['depth=1', 'single-branch=yes', 'branch']) {
  test(`--git rejects ${bad}`, () => {
    assert.throws(() => parseGitOptions(bad), (err: unknown) => isGantryError(err, 'INVALID_ARGUMENT') && err.message.includes(bad.split('=')[0]!));
  });
}

const credentialCases: Array<{ name: string; env: NodeJS.ProcessEnv; url?: { username: string; password: string }; want: unknown }> = [
  { name: 'none', env: {}, want: undefined },
  { name: 'username and password', env: { GIT_USERNAME: 'u', GIT_PASSWORD: 'p' }, want: { username: 'u', password: 'p' } },
  { name: 'GIT_TOKEN overrides username/password, empty password', env: { GIT_USERNAME: 'u', GIT_PASSWORD: 'p', GIT_TOKEN: 't' }, want: { username: 't', password: '' } },
  { name: 'GIT_AUTH_TOKEN as x-access-token', env: { GIT_AUTH_TOKEN: 'gh' }, want: { username: 'x-access-token', password: 'gh' } },
  { name: 'URL userinfo wins', env: { GIT_TOKEN: 't' }, url: { username: 'a', password: 'b' }, want: { username: 'a', password: 'b' } },
];

for (const c of credentialCases) {
  test(`git credentials: ${c.name}`, () => {
    assert.deepEqual(gitCredentials({ url: 'https://h/r', ...(c.url ? { urlCredentials: c.url } : {}) }, c.env), c.want);
  });
}

test('git credentials: secrets are redacted from text', () => {
  const text = redactSecrets('failed https://tok123@h/r with password hunter22 for user alice', { username: 'alice', password: 'hunter22' });
  assert.ok(!text.includes('hunter22'));
  assert.ok(!text.includes('tok123'));
  assert.ok(!text.includes('alice'));
});

test('.gitmodules: sections, quoting, comments and trailing slashes', () => {
  const text = [
    '# comment',
    '[submodule "lib"]',
    '\tpath = lib/',
    '\turl = ../lib.git',
    '[core]',
    '\tpath = not-a-module',
    '[submodule "with \\"quote\\""]',
    '  path = "vendor/x" ; trailing comment',
    '  URL = https://example.com/x.git',
  ].join('\n');
  assert.deepEqual(parseGitmodules(text), [
    { name: 'lib', path: 'lib', url: '../lib.git' },
    { name: 'with "quote"', path: 'vendor/x', url: 'https://example.com/x.git' },
  ]);
});

const submoduleUrls: Array<{ url: string; parent: string; want: string }> = [
  { url: '../lib.git', parent: 'https://h/org/app.git', want: 'https://h/org/lib.git' },
  { url: './lib.git', parent: 'https://h/org/app.git', want: 'https://h/org/app.git/lib.git' },
  { url: '../../other/lib', parent: 'http://h:8080/org/app', want: 'http://h:8080/other/lib' },
  { url: 'https://elsewhere/x.git', parent: 'https://h/org/app.git', want: 'https://elsewhere/x.git' },
];

for (const c of submoduleUrls) {
  test(`submodule URL ${c.url} next to ${c.parent}`, () => {
    assert.equal(resolveSubmoduleUrl(c.url, c.parent), c.want);
  });
}

test('submodule URL over SSH is UNSUPPORTED naming the option', () => {
  assert.throws(() => resolveSubmoduleUrl('git@h:o/r.git', 'https://h/o/app.git'), (err: unknown) => isGantryError(err, 'UNSUPPORTED') && err.message.includes('recurse-submodules'));
});
