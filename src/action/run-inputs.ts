import { resolve } from 'node:path';
import type { BuildOptions } from '../build/index.js';
import { GantryError } from '../util/errors.js';
import type { ActionInputs } from './inputs.js';

/**
 * The RUN inputs (`secrets`, `secret-files`, `secret-envs`, `network`, `add-hosts`, `sandbox`)
 * read as docker/build-push-action reads them, mapped onto BuildOptions.
 */
export interface RunInputs {
  sandbox: NonNullable<BuildOptions['sandbox']>;
  secrets: NonNullable<BuildOptions['secrets']>;
  /**
   * Variables to add to the build's environment (never to RUN's): a `secrets` value travels to
   * the engine as a private variable, so it is never written to disk.
   */
  secretEnv: Record<string, string>;
  /** Values the runner must mask. */
  masks: string[];
  network?: NonNullable<BuildOptions['network']>;
  addHosts?: NonNullable<BuildOptions['addHosts']>;
}

export const SANDBOXES = ['auto', 'ns', 'rootless', 'inplace'] as const;
const NETWORKS = ['default', 'none', 'host'] as const;

/** Prefix of the private variables holding `secrets` values (followed by the secret's index). */
export const SECRET_ENV_PREFIX = 'GANTRY_ACTION_SECRET_';

function invalid(input: string, text: string, expected: string): GantryError {
  return new GantryError('INVALID_ARGUMENT', `input "${input}": invalid entry "${text}": expected ${expected}`, { input, hint: `one ${expected} per line` });
}

/**
 * `id=rest` split at the first `=`; both sides non-empty. A malformed `secrets` entry is named by
 * its position only: without an `=` it may be a bare secret value.
 */
function idValue(input: string, text: string, index: number, expected: string): [string, string] {
  const eq = text.indexOf('=');
  const id = eq > 0 ? text.slice(0, eq).trim() : '';
  const value = eq > 0 ? text.slice(eq + 1) : '';
  if (id === '' || value === '') throw invalid(input, input === 'secrets' ? `#${index + 1} (value not shown)` : text, expected);
  return [id, value];
}

/** The strings to mask for one secret value: the whole value, and each line of a multi-line one (the runner masks line by line). */
export function masksFor(value: string): string[] {
  const out = [value];
  const lines = value.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length > 1) out.push(...lines);
  return out;
}

/** `host:ip` as build-push-action documents it, or `host=ip` as buildx also takes; the IP may be IPv6. */
export function parseAddHostsInput(list: readonly string[]): NonNullable<BuildOptions['addHosts']> {
  return list.map((text) => {
    const eq = text.indexOf('=');
    const i = eq >= 0 ? eq : text.indexOf(':');
    const host = i < 0 ? '' : text.slice(0, i).trim();
    const ip = i < 0 ? '' : text.slice(i + 1).trim().replace(/^\[(.*)\]$/, '$1');
    if (!/^[A-Za-z0-9._-]+$/.test(host) || !/^[0-9A-Fa-f.:]+$/.test(ip)) throw invalid('add-hosts', text, 'host:ip (e.g. docker:10.180.0.1)');
    return { host, ip };
  });
}

/**
 * Maps the RUN inputs. `secrets` values are masked by the caller (masks) before anything is
 * logged; a secret id given twice fails, as a silently shadowed secret would be hard to find.
 */
export function mapRunInputs(inputs: Pick<ActionInputs, 'secrets' | 'secretFiles' | 'secretEnvs' | 'network' | 'addHosts' | 'sandbox'>, workspace: string): RunInputs {
  const secrets: RunInputs['secrets'] = {};
  const secretEnv: Record<string, string> = {};
  const masks: string[] = [];
  const add = (input: string, id: string, source: { src?: string; env?: string }) => {
    if (Object.hasOwn(secrets, id)) {
      throw new GantryError('INVALID_ARGUMENT', `secret "${id}" is given twice (the second time in input "${input}")`, { input, hint: 'give each secret id once across secrets, secret-files and secret-envs' });
    }
    secrets[id] = source;
  };
  inputs.secrets.forEach((text, i) => {
    const [id, value] = idValue('secrets', text, i, 'id=value (e.g. NPM_TOKEN=${{ secrets.NPM_TOKEN }})');
    masks.push(...masksFor(value));
    const name = `${SECRET_ENV_PREFIX}${i}`;
    secretEnv[name] = value;
    add('secrets', id, { env: name });
  });
  for (const [i, text] of inputs.secretFiles.entries()) {
    const [id, path] = idValue('secret-files', text, i, 'id=path (relative to the workspace)');
    // build-push-action reads the path relative to the step's working directory: the workspace.
    add('secret-files', id, { src: resolve(workspace, path.trim()) });
  }
  for (const [i, text] of inputs.secretEnvs.entries()) {
    const [id, name] = idValue('secret-envs', text, i, 'id=ENV_VAR_NAME');
    add('secret-envs', id, { env: name.trim() });
  }

  const sandbox = inputs.sandbox === '' ? 'auto' : inputs.sandbox;
  if (!(SANDBOXES as readonly string[]).includes(sandbox)) {
    throw new GantryError('INVALID_ARGUMENT', `input "sandbox" must be one of ${SANDBOXES.join(', ')}, got "${sandbox}"`, { input: 'sandbox', hint: 'leave it empty (auto) unless you need one backend' });
  }
  const out: RunInputs = { sandbox: sandbox as RunInputs['sandbox'], secrets, secretEnv, masks };
  if (inputs.network !== '') {
    if (!(NETWORKS as readonly string[]).includes(inputs.network)) {
      throw new GantryError('INVALID_ARGUMENT', `input "network" must be one of ${NETWORKS.join(', ')}, got "${inputs.network}"`, { input: 'network', hint: 'RUN steps get the host network by default; use none to cut them off' });
    }
    out.network = inputs.network as RunInputs['network'];
  }
  const hosts = parseAddHostsInput(inputs.addHosts);
  if (hosts.length > 0) out.addHosts = hosts;
  return out;
}
