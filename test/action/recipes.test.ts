/**
 * The recipes users copy are run, not just read: the shell of examples/workflows/kaniko-style.yml
 * and examples/recipes/gitlab-ci.yml is extracted and executed with `/kaniko/executor` standing
 * for `gantry executor`, a local git server standing in for GitHub and a local TLS + htpasswd
 * registry for ghcr.io / GitLab's registry. The Kubernetes Job's arguments run under the
 * capabilities its securityContext grants. The Kaniko migration page's flag table must match the
 * executor's flag table.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { executorFlags } from '../../src/cli/executor-flags.js';
import { parseFlags, rejectUnsupported } from '../../src/cli/flags.js';
import { main } from '../../src/cli/main.js';
import { run as exec } from '../../src/testing/exec.js';
import { startGitServer, type GitServer } from '../../src/testing/git-server.js';
import { makeBusyboxImage, type TestImage } from '../../src/testing/images.js';
import { repoRoot } from '../../src/testing/paths.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoPush } from '../../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { readOutputs, runInProcess, skopeoImage } from './support.js';

const ACTOR = 'octocat';
const TOKEN = 'ghs_recipeToken0123456789abcdef';
const REPOSITORY = 'Octo-Org/Hello-App';

interface Step {
  name: string;
  env: Record<string, string>;
  run: string;
}

const indentOf = (line: string) => line.length - line.trimStart().length;

/** The `run: |` scripts (and `env:` maps) of a workflow's steps, in order. Enough YAML for our recipes. */
export function workflowSteps(text: string): Step[] {
  const lines = text.split('\n');
  const steps: Step[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = /^(\s*)- name: (.*)$/.exec(lines[i]!);
    if (!start) continue;
    const dash = start[1]!.length;
    const step: Step = { name: start[2]!.trim(), env: {}, run: '' };
    for (i++; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.trim() !== '' && indentOf(line) <= dash) break;
      const key = /^\s*(env|run):\s*(\|)?\s*$/.exec(line);
      if (!key) continue;
      const keyIndent = indentOf(line);
      const block: string[] = [];
      let blockIndent = -1;
      while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || indentOf(lines[i + 1]!) > keyIndent)) {
        const next = lines[++i]!;
        if (blockIndent < 0 && next.trim() !== '') blockIndent = indentOf(next);
        block.push(next.slice(Math.max(blockIndent, 0)));
      }
      if (key[1] === 'run') step.run = block.join('\n').trimEnd() + '\n';
      else for (const b of block) if (b.includes(':')) step.env[b.slice(0, b.indexOf(':')).trim()] = b.slice(b.indexOf(':') + 1).trim();
    }
    i--;
    steps.push(step);
  }
  return steps;
}

/** A GitLab job's `script:` items as shell lines (`>-` blocks folded into one line). */
export function gitlabScript(text: string): string[] {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => /^\s*script:\s*$/.test(l));
  if (at < 0) throw new Error('no script: in the GitLab recipe');
  const keyIndent = indentOf(lines[at]!);
  const items: string[] = [];
  for (let i = at + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    if (indentOf(line) <= keyIndent && !line.trimStart().startsWith('- ')) break;
    const item = /^(\s*)- (.*)$/.exec(line);
    if (!item) continue;
    if (item[2] === '>-' || item[2] === '>') {
      const folded: string[] = [];
      while (i + 1 < lines.length && lines[i + 1]!.trim() !== '' && indentOf(lines[i + 1]!) > item[1]!.length) folded.push(lines[++i]!.trim());
      items.push(folded.join(' '));
    } else {
      items.push(item[2]!);
    }
  }
  return items;
}

/** The `with:` inputs of the step that `uses:` the gantry Action (block scalars kept as text). */
export function actionStepInputs(text: string): Record<string, string> {
  const lines = text.split('\n');
  const uses = lines.findIndex((l) => /^\s*uses: [^/\s]+\/gantry@/.test(l));
  if (uses < 0) throw new Error('no step uses the gantry Action');
  const at = lines.findIndex((l, i) => i > uses && /^\s*with:\s*$/.test(l));
  const withIndent = indentOf(lines[at]!);
  const out: Record<string, string> = {};
  for (let i = at + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    if (indentOf(line) <= withIndent) break;
    const kv = /^\s*([a-z][a-z-]*):\s*(.*)$/.exec(line);
    if (!kv) continue;
    if (kv[2] === '|') {
      const block: string[] = [];
      while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || indentOf(lines[i + 1]!) > indentOf(line))) block.push(lines[++i]!.trim());
      out[kv[1]!] = block.join('\n').trim() + '\n';
    } else {
      out[kv[1]!] = kv[2]!.trim();
    }
  }
  return out;
}

/** `${{ expr }}` as the runner would expand them; an expression the test does not know fails. */
function expandExpressions(text: string, values: Record<string, string>): string {
  return text.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, expr: string) => {
    const v = values[expr];
    if (v === undefined) throw new Error(`recipe uses \${{ ${expr} }}, which the test does not provide`);
    return v;
  });
}

/** The `- --flag` items of the first `args:` list in a Kubernetes/Tekton manifest. */
function manifestArgs(text: string): string[] {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => /^\s*args:\s*$/.test(l));
  const out: string[] = [];
  for (let i = at + 1; i < lines.length; i++) {
    const m = /^\s*- (.*)$/.exec(lines[i]!);
    if (lines[i]!.trim().startsWith('#')) continue;
    if (!m) break;
    out.push(m[1]!.trim());
  }
  return out;
}

let tmp: TempDir;
let reg: TestRegistry;
let git: GitServer;
let gitForToken: GitServer;
let shim: string;
let sha = '';
let busybox: TestImage;

async function sh(script: string, env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  const r = await exec('sh', ['-e', '-c', script], { env, cwd });
  assert.equal(r.code, 0, `script failed (${r.code}):\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
}

/** Environment of the executor image: DOCKER_CONFIG where Kaniko keeps it, plus what reaches the local servers. */
function imageEnv(dockerDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tmp.path,
    DOCKER_CONFIG: dockerDir,
    // The stand-ins: a test CA for the registry, plain HTTP for the git server.
    NODE_EXTRA_CA_CERTS: reg.caFile!,
    GIT_PULL_METHOD: 'http',
    ...extra,
  };
}

/** The recipe's own text, with the image's paths and GitHub's/GitLab's hosts pointed at the stand-ins. */
function localize(script: string, dockerDir: string): string {
  return script
    .split('/kaniko/executor').join(shim)
    .split('/kaniko/.docker').join(dockerDir)
    .split('git://github.com/').join(`git://${git.host}/`)
    .split('ghcr.io').join(reg.host);
}

before(async () => {
  tmp = await tempDir('action-recipes');
  reg = await startRegistry({ kind: 'tls-htpasswd', username: ACTOR, password: TOKEN });
  busybox = await makeBusyboxImage();
  await skopeoPush(busybox, reg, 'base/busybox:1');

  // The repository the workflow builds, served over smart HTTP with the workflow's credentials.
  const work = join(tmp.path, 'checkout');
  await mkdir(work);
  await writeFile(join(work, 'Dockerfile'), 'FROM scratch\nCOPY hello.txt /hello.txt\nCMD ["/hello.txt"]\n');
  await writeFile(join(work, 'hello.txt'), 'hello from a recipe\n');
  const g = (args: string[], cwd = work) => exec('git', args, { cwd, check: true, env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });
  await g(['init', '-q', '-b', 'main']);
  await g(['add', '.']);
  await g(['commit', '-q', '-m', 'recipe fixture']);
  sha = (await g(['rev-parse', 'HEAD'])).stdout.trim();
  const root = join(tmp.path, 'git-root');
  await mkdir(join(root, 'Octo-Org'), { recursive: true });
  await g(['clone', '-q', '--bare', work, join(root, REPOSITORY)], tmp.path);
  git = await startGitServer({ root, auth: { username: ACTOR, password: TOKEN } });
  // What the Action's default context meets: the workflow token as x-access-token, a lower-case path.
  await g(['clone', '-q', '--bare', work, join(root, REPOSITORY.toLowerCase())], tmp.path);
  gitForToken = await startGitServer({ root, auth: { username: 'x-access-token', password: TOKEN } });

  // /kaniko/executor in the image runs `gantry executor`.
  shim = join(tmp.path, 'kaniko-executor');
  await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" "${join(repoRoot, 'bin', 'gantry.js')}" executor "$@"\n`);
  await chmod(shim, 0o755);
});

after(async () => {
  await git?.close();
  await gitForToken?.close();
  await reg?.stop();
  await busybox?.cleanup();
  await tmp?.cleanup();
});

describe('recipes run as written', () => {
  it('examples/workflows/kaniko-style.yml: config.json step, then /kaniko/executor with a git:// context', async () => {
    const text = await readFile(join(repoRoot, 'examples', 'workflows', 'kaniko-style.yml'), 'utf8');
    assert.match(text, /container:\s*\n\s*image: ghcr\.io\/[^/]+\/gantry:debug/);
    const steps = workflowSteps(text);
    assert.deepEqual(steps.map((s) => s.name), ['Registry credentials', 'Build and push']);
    const values = {
      'github.actor': ACTOR,
      'secrets.GITHUB_TOKEN': TOKEN,
      'github.repository': REPOSITORY,
      'github.ref': 'refs/heads/main',
      'github.sha': sha,
      'github.server_url': 'https://github.com',
    };
    const dockerDir = join(tmp.path, 'gha-kaniko-docker');
    const before = git.requests.length;
    for (const step of steps) {
      const env = Object.fromEntries(Object.entries(step.env).map(([k, v]) => [k, expandExpressions(v, values)]));
      await sh(localize(expandExpressions(step.run, values), dockerDir), imageEnv(dockerDir, env), tmp.path);
    }
    assert.ok(git.requests.slice(before).some((r) => r.hadCredentials && r.authorized), 'the git context was fetched with GIT_USERNAME/GIT_PASSWORD');
    const pushed = await skopeoImage(reg, `octo-org/hello-app:${sha}`);
    assert.equal((await skopeoImage(reg, 'octo-org/hello-app:latest')).digest, pushed.digest);
    assert.equal(pushed.layers, 1);
    assert.equal(pushed.labels['org.opencontainers.image.source'], `https://github.com/${REPOSITORY}`);
  });

  it('examples/workflows/action.yml: the Action step, with its default git context', async () => {
    const text = await readFile(join(repoRoot, 'examples', 'workflows', 'action.yml'), 'utf8');
    assert.match(text, /packages: write/);
    const values = {
      'github.repository': REPOSITORY.toLowerCase(),
      'github.sha': sha,
      'github.ref_name': 'main',
      "github.event_name != 'pull_request'": 'true',
    };
    const inputs = actionStepInputs(text);
    assert.equal(inputs.context, undefined, 'the recipe relies on the default git context');
    const dockerDir = join(tmp.path, 'gha-action-docker');
    await mkdir(dockerDir);
    await writeFile(join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${ACTOR}:${TOKEN}`).toString('base64') } } }));
    const step = join(tmp.path, 'gha-action-step');
    await mkdir(join(step, 'temp'), { recursive: true });
    await writeFile(join(step, 'output'), '');
    const env: NodeJS.ProcessEnv = {
      GITHUB_OUTPUT: join(step, 'output'),
      GITHUB_REPOSITORY: REPOSITORY.toLowerCase(),
      GITHUB_SHA: sha,
      GITHUB_REF: 'refs/heads/main',
      GITHUB_SERVER_URL: gitForToken.url,
      GITHUB_ACTOR: ACTOR,
      GITHUB_WORKSPACE: step,
      RUNNER_TEMP: join(step, 'temp'),
      DOCKER_CONFIG: dockerDir,
      GIT_PULL_METHOD: 'http',
      // The runner fills in the default of github-token; the CA stands in for ghcr.io's.
      'INPUT_GITHUB-TOKEN': TOKEN,
      'INPUT_REGISTRY-CERTIFICATE': `${reg.host}=${reg.caFile}`,
    };
    for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = localize(expandExpressions(v, values), dockerDir);
    const before = gitForToken.requests.length;
    const r = await runInProcess(env);
    assert.equal(r.exitCode, 0, r.stdout);
    assert.ok(gitForToken.requests.slice(before).some((q) => q.authorized && q.hadCredentials), 'the default context was fetched with the workflow token');
    const pushed = await skopeoImage(reg, `octo-org/hello-app:${sha}`);
    assert.equal((await skopeoImage(reg, 'octo-org/hello-app:latest')).digest, pushed.digest);
    assert.equal((await readOutputs(join(step, 'output'))).digest, pushed.digest);
    assert.equal(pushed.labels['org.opencontainers.image.revision'], sha);
  });

  it('examples/recipes/gitlab-ci.yml: the job script with GitLab\'s predefined variables', async () => {
    const text = await readFile(join(repoRoot, 'examples', 'recipes', 'gitlab-ci.yml'), 'utf8');
    assert.match(text, /entrypoint: \[""\]/);
    const script = gitlabScript(text);
    assert.equal(script.length, 3);
    assert.match(script[2]!, /^\/kaniko\/executor --context "\$\{CI_PROJECT_DIR\}" /);
    const project = join(tmp.path, 'checkout');
    const dockerDir = join(tmp.path, 'gitlab-docker');
    await sh(
      localize(script.join('\n'), dockerDir),
      imageEnv(dockerDir, {
        CI_REGISTRY: reg.host,
        CI_REGISTRY_USER: ACTOR,
        CI_REGISTRY_PASSWORD: TOKEN,
        CI_REGISTRY_IMAGE: `${reg.host}/group/project`,
        CI_PROJECT_DIR: project,
        CI_COMMIT_TAG: 'v1.2.3',
        CI_COMMIT_SHA: sha,
      }),
      project,
    );
    const pushed = await skopeoImage(reg, 'group/project:v1.2.3');
    assert.equal(pushed.layers, 1);
    assert.equal(pushed.labels['org.opencontainers.image.revision'], sha);
  });

  it('examples/recipes/kubernetes-job.yaml: its args build on a base image with only the capabilities it grants', async () => {
    const text = await readFile(join(repoRoot, 'examples', 'recipes', 'kubernetes-job.yaml'), 'utf8');
    const yaml = text.replace(/#.*$/gm, '');
    assert.doesNotMatch(yaml, /privileged: true|hostPath|docker\.sock|runAsUser: 0/);
    assert.match(text, /allowPrivilegeEscalation: false/);
    const caps = /add: \[([^\]]*)\]/.exec(text)![1]!.split(',').map((c) => c.trim().toLowerCase());
    assert.deepEqual(caps, ['chown', 'dac_override', 'fowner']);
    const args = manifestArgs(text);
    assert.ok(args.includes('--kaniko-dir=/work'));
    // The same build on a base image whose files have owners, under exactly those capabilities.
    const project = join(tmp.path, 'k8s-project');
    await mkdir(project, { recursive: true });
    await writeFile(join(project, 'Dockerfile'), `FROM ${reg.host}/base/busybox:1\nCOPY --chown=daemon:daemon app.txt /srv/app.txt\n`);
    await writeFile(join(project, 'app.txt'), 'app\n');
    const workDir = join(tmp.path, 'k8s-work');
    const dockerDir = join(tmp.path, 'k8s-docker');
    await mkdir(workDir);
    await mkdir(dockerDir);
    await writeFile(join(dockerDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${ACTOR}:${TOKEN}`).toString('base64') } } }));
    const localArgs = args.map((a) =>
      a.startsWith('--context=') ? `--context=dir://${project}` : a.startsWith('--destination=') ? `--destination=${reg.host}/k8s/app:1` : a === '--kaniko-dir=/work' ? `--kaniko-dir=${workDir}` : a,
    );
    const r = await exec(
      'setpriv',
      ['--no-new-privs', '--inh-caps=-all', `--bounding-set=-all,${caps.map((c) => `+${c}`).join(',')}`, shim, ...localArgs],
      { env: imageEnv(dockerDir) },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((await skopeoImage(reg, 'k8s/app:1')).layers, busybox.diffIds.length + 1);
  });

  it('examples/recipes/tekton-task.yaml: every executor flag it passes exists and is supported', async () => {
    const text = await readFile(join(repoRoot, 'examples', 'recipes', 'tekton-task.yaml'), 'utf8');
    assert.match(text, /apiVersion: tekton\.dev\/v1\nkind: Task/);
    const args = manifestArgs(text).filter((a) => a.startsWith('--'));
    assert.deepEqual(args.map((a) => a.slice(0, a.indexOf('='))), ['--dockerfile', '--context', '--destination', '--digest-file']);
    const parsed = parseFlags(args, executorFlags, {});
    rejectUnsupported(parsed, executorFlags, 'gantry executor');
  });
});

describe('docs/kaniko-migration.md', () => {
  it('its flag table is the one generated from the executor\'s flags', async () => {
    const gen = (await import(pathToFileURL(join(repoRoot, 'scripts', 'gen-flag-docs.mjs')).href)) as {
      renderTable(flags: unknown): string;
      withTable(doc: string, table: string): string;
      DOC: string;
    };
    const doc = await readFile(gen.DOC, 'utf8');
    assert.equal(doc, gen.withTable(doc, gen.renderTable(executorFlags)), 'run "node scripts/gen-flag-docs.mjs" to regenerate the table');
    for (const f of executorFlags) assert.ok(doc.includes(`\`--${f.name}\``), `--${f.name} is documented`);
  });

  it('flags the page lists as refused are refused by the executor', async () => {
    const gen = (await import(pathToFileURL(join(repoRoot, 'scripts', 'gen-flag-docs.mjs')).href)) as { REFUSED_BY_EXECUTOR: Record<string, string> };
    const argsFor: Record<string, string> = { 'ignore-var-run': '--ignore-var-run=false' };
    for (const name of Object.keys(gen.REFUSED_BY_EXECUTOR)) {
      let stderr = '';
      const code = await main(['executor', argsFor[name] ?? `--${name}`, '--no-push', `--context=${tmp.path}`], {
        stdout: () => undefined,
        stderr: (t) => (stderr += t),
        env: {},
      });
      assert.equal(code, 2, `--${name}: expected a usage error, got exit ${code}: ${stderr}`);
      assert.match(stderr, new RegExp(`--${name}`));
    }
  });
});
