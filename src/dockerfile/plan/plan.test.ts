import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../parser/index.js';
import type { Instruction } from '../instructions/index.js';
import { injectOnbuild, planBuild, type BuildPlan, type PlanOptions } from './index.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const ARM7 = { os: 'linux', architecture: 'arm', variant: 'v7' };

function plan(text: string, opts: PlanOptions = {}): BuildPlan {
  return planBuild(parseDockerfile(text, { file: 'Dockerfile' }), { buildPlatform: AMD64, env: {}, ...opts });
}

/** Expands every instruction of a stage with a scope, returning the expanded values of interest. */
function run(p: BuildPlan, stage: number, baseEnv: string[] = []): { insts: Instruction[]; scope: ReturnType<BuildPlan['stages'][number]['createScope']> } {
  const scope = p.stages[stage]!.createScope(baseEnv);
  const insts = p.stages[stage]!.instructions.map((i) => scope.next(i).instruction);
  return { insts, scope };
}

function workdirs(insts: Instruction[]): string[] {
  return insts.flatMap((i) => (i.kind === 'workdir' ? [i.path] : []));
}

test('stages get names (case-insensitive), bases and their instructions', () => {
  const p = plan('FROM alpine:3.19 AS Base\nRUN true\nFROM base AS build\nFROM scratch\nCOPY --from=BUILD /a /a\n');
  assert.deepEqual(p.stages.map((s) => [s.index, s.name, s.base]), [
    [0, 'base', { kind: 'image', ref: 'alpine:3.19' }],
    [1, 'build', { kind: 'stage', index: 0 }],
    [2, undefined, { kind: 'scratch' }],
  ]);
  assert.equal(p.target, 2);
  assert.deepEqual(p.order, [0, 1, 2]);
  assert.deepEqual(p.stages[2]!.dependencies.map((d) => [d.stage, d.via]), [[1, 'copy']]);
  assert.equal(p.stages[0]!.instructions[0]!.kind, 'run');
});

test('global ARGs are visible in FROM only, unless redeclared with a bare ARG', () => {
  const text = 'ARG VERSION=3.19\nARG DIR=/g\nFROM alpine:${VERSION}\nWORKDIR /a${DIR}\nARG DIR\nWORKDIR /b${DIR}\nARG VERSION=local\nWORKDIR /c${VERSION}\n';
  const p = plan(text);
  assert.equal(p.stages[0]!.baseName, 'alpine:3.19');
  assert.deepEqual(workdirs(run(p, 0).insts), ['/a', '/b/g', '/clocal']);
  const over = plan(text, { buildArgs: { VERSION: '3.20', DIR: '/o' } });
  assert.equal(over.stages[0]!.baseName, 'alpine:3.20');
  assert.deepEqual(workdirs(run(over, 0).insts), ['/a', '/b/o', '/c3.20']);
});

test('bare build args come from the environment, and stay unset when it lacks them', () => {
  const text = 'FROM x\nARG A=da\nARG B=db\nWORKDIR /${A}/${B}\n';
  const p = plan(text, { buildArgs: { A: undefined, B: undefined }, env: { A: 'fromenv' } });
  assert.deepEqual(p.buildArgs, { A: 'fromenv' });
  assert.deepEqual(workdirs(run(p, 0).insts), ['/fromenv/db']);
});

test('a later ENV wins over an ARG of the same name, and ARG values stay out of the config', () => {
  const p = plan('FROM x\nARG V=arg\nWORKDIR /$V\nENV V=env\nWORKDIR /$V\nARG W=w\n');
  const { insts, scope } = run(p, 0, ['PATH=/bin', 'V=base']);
  assert.deepEqual(workdirs(insts), ['/arg', '/env']);
  assert.deepEqual(scope.configEnv(), ['PATH=/bin', 'V=env']);
  assert.deepEqual(scope.args(), [{ key: 'V', value: 'arg' }, { key: 'W', value: 'w' }]);
  assert.equal(scope.runEnv().W, 'w');
  assert.deepEqual(scope.historyArgs(), ['V=env', 'W=w']);
  const unset = run(plan('FROM x\nARG U\nARG S=1\n'), 0).scope;
  assert.deepEqual(unset.historyArgs(), ['U=', 'S=1']);
  assert.equal('U' in unset.runEnv(), false);
});

test('base image ENV is visible to expansion', () => {
  const p = plan('FROM x\nWORKDIR $HOME/app\n');
  assert.deepEqual(workdirs(run(p, 0, ['HOME=/root']).insts), ['/root/app']);
});

test('automatic platform args: global in FROM, in a stage only after ARG', () => {
  const text = 'FROM --platform=$BUILDPLATFORM golang AS build\nWORKDIR /x$TARGETARCH\nARG TARGETARCH\nARG TARGETPLATFORM\nARG BUILDOS\nARG TARGETVARIANT\nWORKDIR /$TARGETARCH/$BUILDOS/${TARGETVARIANT:-none}\nWORKDIR $TARGETPLATFORM\n';
  const p = plan(text, { targetPlatform: ARM7 });
  assert.deepEqual(p.stages[0]!.platform, AMD64);
  assert.deepEqual(workdirs(run(p, 0).insts), ['/x', '/arm/linux/v7', 'linux/arm/v7']);
  const same = plan(text, { targetPlatform: 'linux/arm64' });
  assert.deepEqual(workdirs(run(same, 0).insts), ['/x', '/arm64/linux/none', 'linux/arm64']);
  assert.equal(plan('FROM img-$TARGETOS-$TARGETARCH\n', { targetPlatform: 'linux/arm64' }).stages[0]!.baseName, 'img-linux-arm64');
});

test('proxy build args reach RUN without ARG but never history or expansion', () => {
  const p = plan('FROM x\nARG A=1\nWORKDIR /${HTTP_PROXY:-none}\n', { buildArgs: { HTTP_PROXY: 'http://p:3128', no_proxy: 'local' } });
  const { insts, scope } = run(p, 0);
  assert.deepEqual(workdirs(insts), ['/none']);
  assert.equal(scope.runEnv().HTTP_PROXY, 'http://p:3128');
  assert.equal(scope.runEnv().no_proxy, 'local');
  assert.deepEqual(scope.historyArgs(), ['A=1']);
  assert.deepEqual(p.unusedBuildArgs, []);
  const declared = plan('FROM x\nARG HTTPS_PROXY\n', { buildArgs: { HTTPS_PROXY: 'http://q' } });
  const s2 = run(declared, 0).scope;
  assert.equal(s2.runEnv().HTTPS_PROXY, 'http://q');
  assert.deepEqual(s2.historyArgs(), []);
});

test('unused build args are reported as a warning', () => {
  const p = plan('ARG G\nFROM x\nARG USED\nFROM y AS other\nARG ONLY_OTHER\n', {
    buildArgs: { G: '1', USED: '2', UNUSED: '3', ONLY_OTHER: '4', BUILDKIT_INLINE_CACHE: '1', TARGETARCH: 'arm64' },
    target: 'other',
  });
  assert.deepEqual(p.unusedBuildArgs, ['USED', 'UNUSED']);
  assert.equal(p.warnings[0]!.rule, 'UnusedBuildArg');
});

test('--target picks a stage case-insensitively; unreachable stages are skipped', () => {
  const text = 'FROM a AS deps\nFROM b AS unrelated\nFROM c AS build\nCOPY --from=deps /x /x\nRUN --mount=type=bind,from=1,target=/m true\nFROM d AS final\nCOPY --from=build / /\n';
  const p = plan(text, { target: 'BUILD' });
  assert.equal(p.target, 2);
  assert.deepEqual(p.order, [0, 1, 2]);
  assert.deepEqual(p.skipped, [3]);
  const last = plan(text);
  assert.deepEqual(last.order, [0, 1, 2, 3]);
  const reach = plan('FROM a AS one\nFROM b AS two\nFROM c\nCOPY --from=two / /\n');
  assert.deepEqual(reach.order, [1, 2]);
  assert.deepEqual(reach.skipped, [0]);
  const kaniko = plan('FROM a AS one\nFROM b AS two\nFROM c\nCOPY --from=two / /\n', { includeUnreachable: true });
  assert.deepEqual(kaniko.order, [0, 1, 2]);
});

test('COPY --from and mounts of images are image dependencies', () => {
  const p = plan('FROM x\nCOPY --from=alpine:3.19 /etc/os-release /\nRUN --mount=type=bind,from=busybox,target=/bb true\nRUN --mount=type=cache,target=/c true\n');
  assert.deepEqual(p.stages[0]!.images.map((i) => [i.ref, i.via]), [['alpine:3.19', 'copy'], ['busybox', 'mount']]);
  assert.deepEqual(p.stages[0]!.dependencies, []);
});

test('bad stage graphs and targets are rejected with locations and hints', () => {
  const cases: Array<[string, PlanOptions, string, RegExp]> = [
    ['FROM a AS x\nFROM b AS X\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:2:1: duplicate stage name "x"/],
    ['FROM a AS x\nCOPY --from=x / /\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:2:1: circular dependency detected on stage: x/],
    ['FROM a\nCOPY --from=later / /\nFROM b AS later\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:2:1: stage "later" is defined later/],
    ['FROM a\nCOPY --from=1 / /\nFROM b\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:2:1: invalid stage index 1/],
    ['FROM a\nRUN --mount=from=0,target=/x true\n', {}, 'DOCKERFILE_INVALID', /circular dependency detected on stage: 0/],
    ['FROM later\nFROM b AS later\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:1:1: stage "later" is defined later/],
    ['RUN true\nFROM a\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:1:1: no build stage in current context/],
    ['ARG X\n', {}, 'DOCKERFILE_INVALID', /contains no stages to build/],
    ['FROM --platform=linux/amd64/v2/x a\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:1:1: invalid platform/],
    ['FROM a AS build\nFROM b AS test\n', { target: 'relase' }, 'STAGE_NOT_FOUND', /target stage "relase" could not be found/],
    ['FROM a AS builder\nFROM b\nCOPY --from=Buidler /x /x\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:3:1: COPY --from Buidler: no stage has this name and it is not a valid image reference \(did you mean stage builder\?\)/],
    ['FROM a AS builder\nFROM Builder_Stage\n', {}, 'DOCKERFILE_INVALID', /^Dockerfile:2:1: FROM Builder_Stage: no stage has this name/],
    ['FROM a\nRUN --mount=from=UPPER,target=/x true\n', {}, 'DOCKERFILE_INVALID', /RUN --mount from UPPER: no stage has this name/],
  ];
  for (const [text, opts, code, re] of cases) {
    assert.throws(() => plan(text, opts), (e: any) => e.code === code && re.test(e.message) && !!e.hint, text);
  }
  assert.throws(() => plan('FROM a AS build\nFROM b AS test\n', { target: 'x' }), (e: any) => e.hint === 'available stages: build, test');
});

test('injectOnbuild runs base image triggers first and validates them', () => {
  const p = plan('FROM a AS deps\nFROM node:20 AS app\nRUN own\n');
  const app = p.stages[1]!;
  const injected = injectOnbuild(app, ['COPY . /app', 'RUN npm ci', 'COPY --from=deps /x /x'], p);
  assert.deepEqual(injected.instructions.map((i) => i.kind), ['copy', 'run', 'copy', 'run']);
  assert.deepEqual(injected.dependencies.map((d) => d.stage), [0]);
  assert.equal(app.instructions.length, 1, 'the planned stage is not modified');
  for (const bad of ['ONBUILD RUN x', 'FROM x', 'MAINTAINER me', 'RUNN x', 'COPY --from=app / /']) {
    assert.throws(() => injectOnbuild(app, [bad], p), (e: any) => e.code === 'DOCKERFILE_INVALID' && e.message.startsWith('Dockerfile:2:1: ONBUILD trigger'), bad);
  }
});

test('the escape directive applies to expansion', () => {
  const p = plan('# escape=`\nFROM x\nENV A=a`$b\nWORKDIR /$A\n');
  assert.deepEqual(workdirs(run(p, 0).insts), ['/a$b']);
});

test('COPY --from expands global ARGs only', () => {
  const p = plan('ARG SRC=build\nARG IMG=alpine:3.19\nFROM a AS build\nFROM b\nCOPY --from=${SRC} /a /a\nCOPY --from=$IMG /b /b\n');
  const copies = p.stages[1]!.instructions.flatMap((i) => (i.kind === 'copy' ? [i.from] : []));
  assert.deepEqual(copies, ['build', 'alpine:3.19']);
  assert.deepEqual(p.stages[1]!.dependencies.map((d) => d.stage), [0]);
  assert.deepEqual(p.stages[1]!.images.map((i) => i.ref), ['alpine:3.19']);
  assert.throws(
    () => plan('FROM a\nARG LOCAL=x\nCOPY --from=$LOCAL /a /a\n'),
    (e: any) => /^Dockerfile:3:1: COPY --from=\$LOCAL: LOCAL is not a global build arg/.test(e.message) && e.hint.includes('alias stage'),
  );
});

test('image references are checked for syntax only', async () => {
  const { isValidImageReference } = await import('./reference.js');
  const valid = ['alpine', 'alpine:3.19', 'library/alpine', 'ghcr.io/owner/app:v1.2.3', 'localhost:5000/a/b', 'registry.example.com/x@sha256:' + 'a'.repeat(64), 'a-b__c.d/e:latest', 'oci:/images/layout:v1', 'oci:relative/dir', 'docker-archive:/tmp/app.tar:app:1'];
  const invalid = ['Alpine', 'alpine:', ':tag', 'a//b', 'a b', '', 'oci:', 'docker-archive: x'];
  for (const r of valid) assert.ok(isValidImageReference(r), r);
  for (const r of invalid) assert.ok(!isValidImageReference(r), r);
});

test('an image name one typo away from a stage name is a plan warning', () => {
  const p = plan('FROM a AS builder\nFROM b\nCOPY --from=buidler /x /x\n');
  assert.deepEqual(p.stages[1]!.images.map((i) => i.ref), ['buidler']);
  assert.deepEqual(p.warnings.map((w) => [w.rule, w.message, w.node?.range.startLine]), [
    ['StageNameTypo', 'COPY --from=buidler refers to an image, not a stage: did you mean stage builder?', 3],
  ]);
});

test('FROM ${VAR} can name an earlier stage, and quoted ARG defaults lose their quotes', () => {
  const p = plan('ARG BASE=build\nARG MSG="hello world"\nFROM alpine AS build\nFROM ${BASE} AS final\nARG MSG\nARG Q=\'single $quoted\'\nWORKDIR "/$MSG"\nWORKDIR /$Q\n');
  assert.deepEqual(p.stages[1]!.base, { kind: 'stage', index: 0 });
  assert.deepEqual(p.stages[1]!.dependencies.map((d) => [d.stage, d.via]), [[0, 'from']]);
  assert.deepEqual(workdirs(run(p, 1).insts), ['/hello world', '/single $quoted']);
  assert.equal(plan('ARG BASE=build\nFROM alpine AS build\nFROM ${BASE}\n', { buildArgs: { BASE: 'busybox' } }).stages[1]!.base.kind, 'image');
});
