import * as core from '@actions/core';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { build, type BuildResult } from '../build/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import { prepareCredentials } from './credentials.js';
import { readInputs, rejectUnsupported } from './inputs.js';
import { actionLogger } from './log.js';
import { githubContext, mapInputs } from './options.js';
import { mapRunInputs } from './run-inputs.js';
import { chooseRunner, chownTree, mkdirOwned, reexecStep, sudoCaller, systemProbes, type RunnerChoice, type RunnerProbes } from './runner.js';
import { imageStats, summaryMarkdown } from './summary.js';

/** build-push-action's `metadata` output, with the keys BuildKit's metadata file uses. */
export function metadataJson(result: BuildResult, tags: string[]): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    'containerimage.digest': result.digest,
    'containerimage.config.digest': result.imageId,
    'containerimage.mediatype': result.manifestMediaType,
  };
  const names = result.pushed.length > 0 ? result.pushed.map((p) => p.reference) : tags;
  if (names.length > 0) meta['image.name'] = names.join(',');
  return meta;
}

/**
 * The message the step fails with: what went wrong, then what to do; GHCR refusals get the
 * Actions fix, a RUN without any sandbox on this runner gets the runner's choices (`noRunner`).
 */
export function failureMessage(err: unknown, pushRegistries: string[], noRunner?: string): string {
  const e = err instanceof GantryError ? err : wrapError(err, 'gantry');
  let hint = e.hint;
  if (noRunner && e.code === 'UNSUPPORTED' && /RUN sandbox|--sandbox=/.test(e.message)) hint = noRunner;
  // The engine's secret hints name CLI flags; the step takes secrets through its inputs.
  const secret = /\bsecret (\S+?):? /.exec(e.message);
  if (secret && hint && /--secret|src=/.test(hint)) {
    const id = secret[1];
    if (e.message.includes('cannot read')) hint = 'check the path given in `secret-files` (a relative path is read from the workspace)';
    else if (e.message.includes('environment variable')) hint = "set the variable that `secret-envs` names in the step's `env:` block";
    else hint = `give it to the step: \`secrets: ${id}=VALUE\` (e.g. \${{ secrets.X }}), \`secret-files: ${id}=PATH\` or \`secret-envs: ${id}=ENV_VAR\``;
  }
  const denied = e.code === 'DENIED' || e.details.status === 403;
  if (denied && pushRegistries.includes('ghcr.io') && e.message.includes('ghcr.io')) {
    hint =
      'GHCR refused the push (403). Give the job `permissions: packages: write` (the GITHUB_TOKEN has no write access to packages otherwise); ' +
      'if the package already exists and was created by another repository or by hand, add this repository under the package\'s "Manage Actions access" with the Write role. See docs/ghcr.md.';
  }
  return hint ? `${e.message}\nhint: ${hint}` : e.message;
}

function sourceDateEpoch(env: NodeJS.ProcessEnv): Date | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  return v && /^\d+$/.test(v) ? new Date(Number(v) * 1000) : undefined;
}

const RUNNER_LABEL: Record<RunnerChoice['kind'], string> = {
  'in-process': 'in this process',
  rootless: 'rootless, re-executed in a user namespace',
  sudo: 'under sudo, with the ns sandbox',
};

/** `~/.cache/gantry/run-cache` as the build engine defaults it, for the runner's user. */
function runCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'gantry', 'run-cache');
}

/**
 * The Action's main step: inputs -> (re-execution as the runner allows, see runner.ts) -> build
 * -> outputs, summary. Never throws: a failure marks the step failed with the error's message and
 * hint (process exit code 1); a re-executed step's exit code becomes this process's.
 */
export async function run(env: NodeJS.ProcessEnv = process.env, probes: RunnerProbes = systemProbes(env)): Promise<void> {
  const started = Date.now();
  let pushRegistries: string[] = [];
  let cleanup: (() => Promise<void>) | undefined;
  let noRunner: string | undefined;
  const owned: string[] = [];
  const owner = sudoCaller(env);
  const logger = actionLogger();
  try {
    const inputs = readInputs(env);
    const githubToken = inputs.githubToken || env.GITHUB_TOKEN || '';
    for (const secret of [inputs.password, githubToken]) if (secret) core.setSecret(secret);
    const gh = githubContext(env);
    // Masked before anything else can print them (the re-executed step shares this stdout).
    const runInputs = mapRunInputs(inputs, gh.workspace);
    for (const m of runInputs.masks) core.setSecret(m);
    rejectUnsupported(inputs);

    const choice = await chooseRunner(runInputs.sandbox, probes);
    core.info(`gantry runs ${RUNNER_LABEL[choice.kind]}: ${choice.why}`);
    if (choice.kind !== 'in-process') {
      logger.flush();
      const code = await reexecStep(choice.kind, env, logger);
      if (code !== 0) process.exitCode = code;
      return;
    }
    noRunner = choice.unavailable;
    if (noRunner) core.info(noRunner);

    const buildEnv: NodeJS.ProcessEnv = { ...env, ...runInputs.secretEnv };
    const created = sourceDateEpoch(env) ?? new Date(Math.floor(started / 1000) * 1000);
    const mapped = mapInputs(inputs, gh, buildEnv, created);
    pushRegistries = mapped.pushRegistries;
    for (const n of mapped.notices) core.notice(n);
    // As build-push-action does, the token reads the workflow's own repository for the default git context.
    if (mapped.defaultGitContext && githubToken && !env.GIT_AUTH_TOKEN) buildEnv.GIT_AUTH_TOKEN = githubToken;

    const creds = await prepareCredentials({
      registry: inputs.registry,
      username: inputs.username,
      password: inputs.password,
      githubToken,
      actor: gh.actor,
      pushRegistries,
      env,
      tempRoot: gh.runnerTemp,
    });
    cleanup = creds.cleanup;
    for (const s of creds.secrets) core.setSecret(s);
    for (const n of creds.notes) core.info(n);
    const options = mapped.options;
    options.sandbox = runInputs.sandbox;
    if (Object.keys(runInputs.secrets).length > 0) options.secrets = runInputs.secrets;
    if (runInputs.network) options.network = runInputs.network;
    if (runInputs.addHosts) options.addHosts = runInputs.addHosts;
    if (owner) {
      // Under sudo: what the step writes for later steps goes back to the runner's user.
      options.cacheDir = runCacheDir(env);
      await mkdirOwned(options.cacheDir, owner);
      // Caches of image files (unpacked layers keep the image's owners: never chowned) and the
      // indexes beside them are root's, in root's own cache directory, not the runner's home.
      options.env = { ...env, XDG_CACHE_HOME: join(userInfo().homedir, '.cache') };
      for (const p of [options.ociLayoutPath, options.tarPath, options.defaultOutputDir]) if (typeof p === 'string') owned.push(p);
      // A type=local cache-to directory is read back by a later step (actions/cache) as the runner's user.
      for (const spec of options.cache?.to ?? []) {
        const dest = /(?:^|,)dest=([^,]+)/.exec(spec)?.[1];
        if (dest) owned.push(dest);
      }
    }
    if (creds.dockerConfigDir) options.registry = { ...options.registry, dockerConfigDir: creds.dockerConfigDir };
    const tags = options.destinations ?? [];
    core.info(`building ${options.context.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@#?]*@/i, '$1***@')}${tags.length ? ` -> ${tags.join(', ')}` : ''}${options.noPush ? ' (not pushing)' : ''}`);

    const result = await build({ ...options, logger, workDir: gh.runnerTemp });
    logger.flush();

    core.setOutput('digest', result.digest);
    core.setOutput('imageid', result.imageId);
    core.setOutput('metadata', JSON.stringify(metadataJson(result, tags), null, 2));

    const stats = await imageStats(result, options.registry ?? {});
    if (env.GITHUB_STEP_SUMMARY) {
      await core.summary.addRaw(summaryMarkdown({ result, tags, stats, totalMs: Date.now() - started }), true).write();
    }
  } catch (err) {
    logger.flush();
    core.setFailed(failureMessage(err, pushRegistries, noRunner));
  } finally {
    await cleanup?.().catch(() => undefined);
    if (owner) {
      for (const p of owned) {
        await chownTree(p, owner).catch((err: Error) => core.warning(`could not give ${p} back to uid ${owner.uid}: ${err.message}`));
      }
    }
  }
}
