import * as core from '@actions/core';
import { build, type BuildResult } from '../build/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import { prepareCredentials } from './credentials.js';
import { readInputs, rejectUnsupported } from './inputs.js';
import { actionLogger } from './log.js';
import { githubContext, mapInputs } from './options.js';
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

/** The message the step fails with: what went wrong, then what to do; GHCR refusals get the Actions fix. */
export function failureMessage(err: unknown, pushRegistries: string[]): string {
  const e = err instanceof GantryError ? err : wrapError(err, 'gantry');
  let hint = e.hint;
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

/**
 * The Action's main step: inputs -> build -> outputs, summary. Never throws: a failure marks the
 * step failed with the error's message and hint (process exit code 1).
 */
export async function run(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const started = Date.now();
  let pushRegistries: string[] = [];
  let cleanup: (() => Promise<void>) | undefined;
  const logger = actionLogger();
  try {
    const inputs = readInputs(env);
    const githubToken = inputs.githubToken || env.GITHUB_TOKEN || '';
    for (const secret of [inputs.password, githubToken]) if (secret) core.setSecret(secret);
    rejectUnsupported(inputs);
    if (inputs.noCache) core.debug('no-cache: gantry has no layer cache yet, so every step runs anyway');

    const gh = githubContext(env);
    const buildEnv: NodeJS.ProcessEnv = { ...env };
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
    core.setFailed(failureMessage(err, pushRegistries));
  } finally {
    await cleanup?.().catch(() => undefined);
  }
}
