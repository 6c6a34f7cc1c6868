/**
 * Flags about RUN, shared by `gantry build` (docker buildx spellings) and `gantry executor`
 * (gantry extensions: Kaniko has none of them): sandbox backend, secrets, network, extra hosts.
 */
import type { BuildOptions } from '../build/options.js';
import type { FlagSpec, ParsedFlags } from './flags.js';
import { UsageError } from './flags.js';

export const runFlags: FlagSpec[] = [
  { name: 'sandbox', kind: 'string', env: 'GANTRY_SANDBOX', default: 'auto', valueName: 'auto|ns|rootless|inplace', help: 'how RUN is isolated; auto picks the first backend that works here and logs which' },
  { name: 'secret', kind: 'list', valueName: 'id=ID[,src=FILE|,env=VAR]', help: 'secret for RUN --mount=type=secret (never stored in the image)' },
  { name: 'network', kind: 'string', valueName: 'default|none|host', help: 'network of RUN steps without --network' },
  { name: 'add-host', kind: 'list', valueName: 'host:ip', help: 'extra /etc/hosts entry for RUN' },
];

const SANDBOXES = ['auto', 'ns', 'rootless', 'inplace'] as const;
const NETWORKS = ['default', 'none', 'host'] as const;

/**
 * `--secret id=x,src=FILE`, `id=x,env=VAR`, `type=file|env` and `source=` as buildx takes them;
 * with neither src nor env, an environment variable named like the id wins, else a file of that name.
 */
export function parseSecrets(list: readonly string[], env: NodeJS.ProcessEnv): NonNullable<BuildOptions['secrets']> {
  const out: NonNullable<BuildOptions['secrets']> = {};
  for (const text of list) {
    const f: Record<string, string> = {};
    for (const part of text.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new UsageError(`invalid --secret "${text}": expected comma-separated key=value fields (id=…,src=… or id=…,env=…)`);
      const key = part.slice(0, eq).trim().toLowerCase();
      if (!['type', 'id', 'src', 'source', 'env'].includes(key)) throw new UsageError(`invalid --secret "${text}": unexpected key "${key}"`);
      f[key === 'source' ? 'src' : key] = part.slice(eq + 1);
    }
    const id = f.id;
    if (!id) throw new UsageError(`invalid --secret "${text}": id= is required`);
    if (f.type !== undefined && f.type !== 'file' && f.type !== 'env') throw new UsageError(`invalid --secret "${text}": type must be file or env`);
    if (f.src !== undefined && f.env !== undefined) throw new UsageError(`invalid --secret "${text}": give src= or env=, not both`);
    if (f.type === 'env' && f.src !== undefined) out[id] = { env: f.src };
    else if (f.src !== undefined) out[id] = { src: f.src };
    else if (f.env !== undefined) out[id] = { env: f.env };
    else if (f.type === 'env' || (f.type === undefined && env[id] !== undefined)) out[id] = { env: id };
    else out[id] = { src: id };
  }
  return out;
}

/** `host:ip` (the IP may itself contain colons: IPv6). */
export function parseAddHosts(list: readonly string[]): NonNullable<BuildOptions['addHosts']> {
  return list.map((text) => {
    const i = text.indexOf(':');
    const host = i < 0 ? '' : text.slice(0, i);
    const ip = i < 0 ? '' : text.slice(i + 1).replace(/^\[(.*)\]$/, '$1');
    if (!/^[A-Za-z0-9._-]+$/.test(host) || !/^[0-9A-Fa-f.:]+$/.test(ip)) throw new UsageError(`invalid --add-host "${text}": expected host:ip`);
    return { host, ip };
  });
}

/** Applies the RUN flags to build options. */
export function applyRunFlags(p: ParsedFlags, opts: BuildOptions, env: NodeJS.ProcessEnv): void {
  const v = p.values;
  const sandbox = (v.sandbox as string) || 'auto';
  if (!(SANDBOXES as readonly string[]).includes(sandbox)) throw new UsageError(`invalid --sandbox "${sandbox}": expected ${SANDBOXES.join(', ')}`);
  opts.sandbox = sandbox as NonNullable<BuildOptions['sandbox']>;
  const secrets = parseSecrets(v.secret as string[], env);
  if (Object.keys(secrets).length > 0) opts.secrets = secrets;
  const network = v.network as string | undefined;
  if (network) {
    if (!(NETWORKS as readonly string[]).includes(network)) throw new UsageError(`invalid --network "${network}": expected ${NETWORKS.join(', ')}`);
    opts.network = network as NonNullable<BuildOptions['network']>;
  }
  const hosts = parseAddHosts(v['add-host'] as string[]);
  if (hosts.length > 0) opts.addHosts = hosts;
}
