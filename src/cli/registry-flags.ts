import type { RegistryOptions } from '../registry/options.js';
import type { FlagSpec, ParsedFlags } from './flags.js';

/** Registry/TLS/mirror flags shared by `copy` and `inspect`, spelled as Kaniko spells them. */
export const registryFlags: FlagSpec[] = [
  { name: 'insecure', kind: 'bool', help: 'allow plain HTTP for the destination registry' },
  { name: 'insecure-pull', kind: 'bool', help: 'allow plain HTTP for the source registry' },
  { name: 'insecure-registry', kind: 'list', valueName: 'registry', help: 'allow plain HTTP for this registry' },
  { name: 'skip-tls-verify', kind: 'bool', help: 'do not verify TLS certificates of the destination registry' },
  { name: 'skip-tls-verify-pull', kind: 'bool', help: 'do not verify TLS certificates of the source registry' },
  { name: 'skip-tls-verify-registry', kind: 'list', valueName: 'registry', help: 'do not verify TLS certificates of this registry' },
  { name: 'registry-certificate', kind: 'map', valueName: 'registry=ca.crt', help: 'extra CA certificate for a registry' },
  { name: 'registry-client-cert', kind: 'map', valueName: 'registry=cert,key', help: 'client certificate (mTLS) for a registry' },
  { name: 'registry-mirror', kind: 'list', env: 'KANIKO_REGISTRY_MIRROR', valueName: 'host[/prefix]', help: 'Docker Hub mirror, tried in order before Docker Hub' },
  { name: 'registry-map', kind: 'map', mapSeparator: ';', env: 'KANIKO_REGISTRY_MAP', valueName: 'orig=mirror', help: 'mirror for any registry, tried in order before the original' },
  { name: 'skip-default-registry-fallback', kind: 'bool', help: 'fail when no mirror has the image instead of using the original registry' },
];

function clientCerts(map: Record<string, string[]>): Record<string, { cert: string; key: string }> {
  const out: Record<string, { cert: string; key: string }> = {};
  for (const [registry, values] of Object.entries(map)) {
    const last = values[values.length - 1]!;
    const [cert, key] = last.split(',');
    if (!cert || !key) throw new Error(`--registry-client-cert ${registry}=${last}: expected registry=/path/cert,/path/key`);
    out[registry] = { cert, key };
  }
  return out;
}

/**
 * Kaniko distinguishes pull-side and push-side switches (`--insecure-pull` vs `--insecure`), so
 * the two directions get their own options.
 */
export function registryOptionsFromFlags(p: ParsedFlags, direction: 'pull' | 'push', env: NodeJS.ProcessEnv): RegistryOptions {
  const v = p.values;
  const insecureAll = direction === 'pull' ? v['insecure-pull'] === true : v['insecure'] === true;
  const skipAll = direction === 'pull' ? v['skip-tls-verify-pull'] === true : v['skip-tls-verify'] === true;
  return {
    insecure: insecureAll ? true : (v['insecure-registry'] as string[]),
    skipTlsVerify: skipAll ? true : (v['skip-tls-verify-registry'] as string[]),
    caFiles: v['registry-certificate'] as Record<string, string[]>,
    clientCerts: clientCerts(v['registry-client-cert'] as Record<string, string[]>),
    mirrors: v['registry-mirror'] as string[],
    registryMaps: v['registry-map'] as Record<string, string[]>,
    skipDefaultRegistryFallback: v['skip-default-registry-fallback'] === true,
    env,
  };
}

const union = (a: RegistryOptions['insecure'], b: RegistryOptions['insecure']): RegistryOptions['insecure'] =>
  a === true || b === true ? true : [...new Set([...(a ?? []), ...(b ?? [])])];

/**
 * One client serves pulls and pushes, so the pull-side and push-side switches merge: either
 * side's "insecure"/"skip verify" applies to the registries it names, and `true` from either wins.
 */
export function mergedRegistryOptions(p: ParsedFlags, env: NodeJS.ProcessEnv): RegistryOptions {
  const pull = registryOptionsFromFlags(p, 'pull', env);
  const push = registryOptionsFromFlags(p, 'push', env);
  return { ...push, insecure: union(pull.insecure, push.insecure), skipTlsVerify: union(pull.skipTlsVerify, push.skipTlsVerify) };
}
