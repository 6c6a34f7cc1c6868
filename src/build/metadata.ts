/**
 * Image config as BuildKit's Dockerfile frontend builds it: the starting config of a stage
 * (scratch, a base image, an earlier stage) and the effect of each metadata instruction on the
 * config and history. WORKDIR's directory and COPY/ADD layers are done by the stage executor;
 * their config side is here too.
 */
import { posix } from 'node:path';
import { exposedPortKeys, type Instruction } from '../dockerfile/index.js';
import type { ContainerConfig, History, ImageConfig, Platform } from '../oci/types.js';
import { exposeCreatedBy, goList, goQuoteList, healthcheckCreatedBy, HISTORY_COMMENT } from './history.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What `FROM scratch` starts with in BuildKit: PATH set, WorkingDir `/`. */
export function scratchConfig(p: Platform): ImageConfig {
  const cfg: ImageConfig = {
    architecture: p.architecture,
    os: p.os,
    config: { Env: [`PATH=${DEFAULT_PATH}`], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
  if (p.variant) cfg.variant = p.variant;
  return cfg;
}

const CONTAINER_KEYS = ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'ArgsEscaped', 'Healthcheck', 'OnBuild', 'Shell'] as const;

/**
 * A deep copy of a base config keeping only what BuildKit's image struct has: unknown fields
 * of the base (container_config, docker_version, ...) are not carried into the new image.
 */
export function inheritConfig(base: ImageConfig): ImageConfig {
  const src = structuredClone(base);
  const config: ContainerConfig = {};
  for (const k of CONTAINER_KEYS) {
    const v = src.config?.[k];
    if (v !== undefined && v !== null) (config as Record<string, unknown>)[k] = v;
  }
  const out: ImageConfig = {
    architecture: src.architecture,
    os: src.os,
    config,
    rootfs: { type: 'layers', diff_ids: [...src.rootfs.diff_ids] },
    history: [...(src.history ?? [])],
  };
  if (src.author !== undefined) out.author = src.author;
  if (src['os.version'] !== undefined) out['os.version'] = src['os.version'];
  if (src['os.features'] !== undefined) out['os.features'] = src['os.features'];
  if (src.variant !== undefined) out.variant = src.variant;
  return out;
}

/**
 * Drops what Go's `omitempty` leaves out of BuildKit's JSON: empty lists and maps, false
 * ArgsEscaped, empty strings (`ENTRYPOINT []` therefore removes the entrypoint).
 */
export function omitEmpty(cfg: ImageConfig): ImageConfig {
  const c = cfg.config;
  if (!c) return cfg;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) {
    if (v === undefined || v === null || v === false || v === '') continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (k !== 'Healthcheck' && typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) continue;
    out[k] = v;
  }
  return { ...cfg, config: out as ContainerConfig };
}

/** BuildKit makes sure every stage has a PATH. */
export function ensurePath(cfg: ImageConfig): void {
  const c = (cfg.config ??= {});
  const env = c.Env ?? [];
  if (!env.some((e) => e.split('=', 1)[0] === 'PATH')) c.Env = [...env, `PATH=${DEFAULT_PATH}`];
}

/** Sets or replaces one variable, keeping its position (BuildKit's addEnv). */
export function addEnv(env: readonly string[] | undefined, key: string, value: string): string[] {
  const out = [...(env ?? [])];
  const i = out.findIndex((e) => e.split('=', 1)[0] === key);
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

/** Go's time.Time JSON form for whole seconds (`1970-01-01T00:00:00Z`), ms otherwise. */
export function formatTime(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}

export function historyEntry(createdBy: string, created: Date, emptyLayer: boolean): History {
  const h: History = { created: formatTime(created), created_by: createdBy, comment: HISTORY_COMMENT };
  if (emptyLayer) h.empty_layer = true;
  return h;
}

/** The default shell for shell-form CMD/ENTRYPOINT/RUN when no SHELL was given. */
export function defaultShell(os: string): string[] {
  return os === 'windows' ? ['cmd', '/S', '/C'] : ['/bin/sh', '-c'];
}

export function withShell(cfg: ImageConfig, args: readonly string[]): string[] {
  const shell = cfg.config?.Shell?.length ? [...cfg.config.Shell] : defaultShell(cfg.os);
  return [...shell, args.join(' ')];
}

/** `path` made absolute against the current WORKDIR, cleaned (BuildKit's NormalizeWorkdir). */
export function normalizeWorkdir(current: string | undefined, path: string): string {
  return posix.isAbsolute(path) ? posix.normalize(path).replace(/(.)\/+$/, '$1') : posix.join('/', current ?? '', path).replace(/(.)\/+$/, '$1');
}

/** Per-stage state BuildKit tracks next to the config. */
export interface MetaState {
  config: ImageConfig;
  /** CMD was set in this stage (then ENTRYPOINT keeps it). */
  cmdSet: boolean;
}

/**
 * Applies a metadata instruction (already expanded; an ARG carries its resolved values) to the
 * config. Returns the history `created_by` (always an empty layer), or undefined for
 * instructions without history (ONBUILD).
 */
export function applyMetadata(state: MetaState, inst: Instruction): string | undefined {
  const cfg = state.config;
  const c = (cfg.config ??= {});
  switch (inst.kind) {
    case 'env': {
      let msg = 'ENV';
      for (const p of inst.pairs) {
        msg += ` ${p.key}=${p.value}`;
        c.Env = addEnv(c.Env, p.key, p.value);
      }
      return msg;
    }
    case 'label': {
      let msg = 'LABEL';
      c.Labels = { ...(c.Labels ?? {}) };
      for (const p of inst.pairs) {
        c.Labels[p.key] = p.value;
        msg += ` ${p.key}=${p.value}`;
      }
      return msg;
    }
    case 'maintainer':
      cfg.author = inst.maintainer;
      return `MAINTAINER ${inst.maintainer}`;
    case 'expose': {
      const keys = inst.ports.flatMap((p) => exposedPortKeys(p));
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
      for (const k of keys) c.ExposedPorts[k] = {};
      return exposeCreatedBy(keys);
    }
    case 'volume':
      c.Volumes = { ...(c.Volumes ?? {}) };
      for (const v of inst.volumes) c.Volumes[v] = {};
      return `VOLUME ${goList(inst.volumes)}`;
    case 'user':
      c.User = inst.user;
      return `USER ${inst.user}`;
    case 'cmd': {
      const args = inst.command.shell ? withShell(cfg, inst.command.args) : [...inst.command.args];
      c.Cmd = args;
      c.ArgsEscaped = true;
      state.cmdSet = true;
      return `CMD ${goQuoteList(args)}`;
    }
    case 'entrypoint': {
      const args = inst.command.shell ? withShell(cfg, inst.command.args) : [...inst.command.args];
      c.Entrypoint = args;
      if (!state.cmdSet) delete c.Cmd;
      return `ENTRYPOINT ${goQuoteList(args)}`;
    }
    case 'healthcheck': {
      const h = inst.health;
      const hc: NonNullable<ContainerConfig['Healthcheck']> = { Test: [...h.test] };
      if (h.interval) hc.Interval = h.interval;
      if (h.timeout) hc.Timeout = h.timeout;
      if (h.startPeriod) hc.StartPeriod = h.startPeriod;
      if (h.startInterval) hc.StartInterval = h.startInterval;
      if (h.retries) hc.Retries = h.retries;
      c.Healthcheck = hc;
      return healthcheckCreatedBy(h);
    }
    case 'shell':
      c.Shell = [...inst.shell];
      return `SHELL ${goList(inst.shell)}`;
    case 'stopsignal':
      c.StopSignal = inst.signal;
      return `STOPSIGNAL ${inst.signal}`;
    case 'arg':
      return 'ARG ' + inst.args.map((a) => (a.value === undefined ? a.key : `${a.key}=${a.value}`)).join(' ');
    case 'onbuild':
      c.OnBuild = [...(c.OnBuild ?? []), inst.expression];
      return undefined;
    default:
      throw new Error(`not a metadata instruction: ${inst.kind}`);
  }
}
