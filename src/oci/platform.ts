import { arch as osArch, endianness } from 'node:os';
import { GantryError } from '../util/errors.js';
import { isObject, optString, optStringArray, Problems, typeName } from './check.js';
import type { Descriptor, ImageIndex, Platform } from './types.js';

/**
 * Platforms as containerd understands them: `os/arch[/variant]`, aliases normalized (x86_64 ->
 * amd64, aarch64 -> arm64, armhf -> arm/v7, i386 -> 386 ...), and matching with the same
 * fallbacks (`linux/arm/v7` can run v6 and v5 images, `linux/amd64` can run 386).
 *
 * arm64's default variant is v8: `linux/arm64` and `linux/arm64/v8` are the same platform. The
 * normalized form omits "v8" (that is what registries and `docker buildx` print), and matching
 * treats a missing arm64 variant as v8. Likewise `arm` without a variant means arm/v7.
 */

const KNOWN_OS = new Set(['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows', 'zos']);
const KNOWN_ARCH = new Set(['386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm']);

/** Records problems of a `platform` object (index entries, descriptors). */
export function checkPlatform(p: Problems, value: unknown, path: string): void {
  if (!isObject(value)) {
    p.add(path, `must be an object, got ${typeName(value)}`);
    return;
  }
  optString(p, value, 'architecture', path, true);
  optString(p, value, 'os', path, true);
  optString(p, value, 'os.version', path);
  optString(p, value, 'variant', path);
  optStringArray(p, value, 'os.features', path);
  optStringArray(p, value, 'features', path);
}

function normalizeArch(arch: string, variant: string): [string, string] {
  arch = arch.toLowerCase();
  variant = variant.toLowerCase();
  switch (arch) {
    case 'i386':
    case 'i686':
    case 'x86':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'x64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant];
    case 'aarch64':
    case 'arm64':
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') return ['arm64', ''];
      if (variant === '9' || variant === '9.0' || variant === 'v9.0') return ['arm64', 'v9'];
      return ['arm64', variant];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7'];
      if (/^[5-8]$/.test(variant)) return ['arm', `v${variant}`];
      return ['arm', variant];
    default:
      return [arch, variant];
  }
}

/** The canonical spelling of a platform; fields that do not take part in matching are kept. */
export function normalizePlatform(p: Platform): Platform {
  let os = (p.os || 'linux').toLowerCase();
  if (os === 'macos') os = 'darwin';
  const [architecture, variant] = normalizeArch(p.architecture, p.variant ?? '');
  const out: Platform = { architecture, os };
  if (p['os.version']) out['os.version'] = p['os.version'];
  if (p['os.features']?.length) out['os.features'] = [...p['os.features']];
  if (variant) out.variant = variant;
  if (p.features?.length) out.features = [...p.features];
  return out;
}

/** `os[(os.version)]/arch[/variant]`, the form `--platform` takes and error messages print. */
export function formatPlatform(p: Platform): string {
  const os = p['os.version'] ? `${p.os}(${p['os.version']})` : p.os;
  return [os, p.architecture, p.variant].filter(Boolean).join('/');
}

/**
 * Parses a `--platform` value. Accepts `os/arch[/variant]`, `os(os.version)/arch`, a lone
 * architecture (`arm64` -> linux/arm64) or a lone OS (`linux` -> host architecture).
 */
export function parsePlatform(spec: string): Platform {
  const bad = (why: string) =>
    new GantryError('INVALID_ARGUMENT', `invalid platform "${spec}": ${why}`, { hint: 'use os/arch[/variant], e.g. linux/amd64 or linux/arm/v7' });
  const parts = spec.trim().split('/');
  if (parts.length > 3 || parts.some((x) => x === '')) throw bad('expected os/arch[/variant]');
  let osPart = parts[0]!;
  let osVersion: string | undefined;
  const m = /^([^()]+)\(([^()]*)\)$/.exec(osPart);
  if (m) {
    osPart = m[1]!;
    osVersion = m[2] || undefined;
  } else if (/[()]/.test(osPart)) throw bad('unbalanced parentheses around os.version');
  for (const x of [osPart, ...parts.slice(1)]) {
    if (!/^[A-Za-z0-9_.-]+$/.test(x)) throw bad(`"${x}" contains characters that are not allowed`);
  }
  let platform: Platform;
  if (parts.length === 1) {
    const lower = osPart.toLowerCase();
    if (KNOWN_OS.has(lower) || lower === 'macos') {
      const host = hostPlatform();
      platform = { os: lower, architecture: host.architecture, ...(host.variant ? { variant: host.variant } : {}) };
    } else {
      const [arch] = normalizeArch(lower, '');
      if (!KNOWN_ARCH.has(arch)) throw bad(`"${osPart}" is neither a known OS nor a known architecture`);
      platform = { os: 'linux', architecture: lower };
    }
  } else {
    platform = { os: osPart, architecture: parts[1]!, ...(parts[2] ? { variant: parts[2] } : {}) };
  }
  if (osVersion) platform['os.version'] = osVersion;
  return normalizePlatform(platform);
}

/**
 * The platform images run on here. Containers are Linux images even on a macOS/Windows host (a VM
 * runs them), so the OS is always linux; the architecture comes from Node's.
 */
export function hostPlatform(): Platform {
  const a = osArch();
  switch (a) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64' };
    case 'arm': {
      const v = (process.config.variables as unknown as Record<string, unknown>).arm_version;
      return { os: 'linux', architecture: 'arm', variant: `v${typeof v === 'string' || typeof v === 'number' ? v : 7}` };
    }
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    case 'mipsel':
      return { os: 'linux', architecture: 'mipsle' };
    case 'mips':
      return { os: 'linux', architecture: 'mips' };
    default:
      // s390x, riscv64, loong64 and ppc share names with Go.
      return { os: 'linux', architecture: a };
  }
}

/** The platform an image config describes. */
export function platformOfConfig(config: { architecture: string; os: string; variant?: string; 'os.version'?: string; 'os.features'?: string[] }): Platform {
  return normalizePlatform({
    architecture: config.architecture,
    os: config.os,
    ...(config.variant ? { variant: config.variant } : {}),
    ...(config['os.version'] ? { 'os.version': config['os.version'] } : {}),
    ...(config['os.features'] ? { 'os.features': config['os.features'] } : {}),
  });
}

/**
 * How far a match may stray from the requested platform:
 * - `compatible` (default, containerd's `Only`): the platform itself first, then what it can also
 *   run: amd64/vN -> lower amd64 levels -> 386; arm/vN -> arm/v(N-1) ... v5; arm64/v8.x -> lower
 *   v8 minors -> arm/v8 ... v5; arm64/v9.x also accepts v8.(x+5).
 * - `strict` (containerd's `OnlyStrict`): only the platform itself (after normalization).
 */
export type MatchMode = 'compatible' | 'strict';

/** Platforms acceptable for `want`, most preferred first, all normalized. */
export function compatiblePlatforms(want: Platform, mode: MatchMode = 'compatible'): Platform[] {
  const p = normalizePlatform(want);
  if (mode === 'strict') return [p];
  const base: Platform = { os: p.os, architecture: p.architecture, ...(p['os.version'] ? { 'os.version': p['os.version'] } : {}) };
  const withArch = (architecture: string, variant?: string): Platform => ({ ...base, architecture, ...(variant ? { variant } : {}) });
  const out: Platform[] = [p];
  const level = (v: string | undefined) => (v && /^v\d+$/.test(v) ? Number(v.slice(1)) : NaN);
  const armDown = (from: number) => {
    for (let v = from; v >= 5; v--) out.push(withArch('arm', `v${v}`));
  };
  switch (p.architecture) {
    case 'amd64': {
      const n = level(p.variant);
      for (let v = n - 1; v >= 2; v--) out.push(withArch('amd64', `v${v}`));
      if (n > 1) out.push(withArch('amd64'));
      out.push(withArch('386'));
      break;
    }
    case 'arm': {
      const n = level(p.variant);
      if (n > 5) armDown(n - 1);
      break;
    }
    case 'arm64': {
      const m = /^v(\d+)(?:\.(\d+))?$/.exec(p.variant ?? 'v8');
      if (!m) break;
      const major = Number(m[1]);
      const minor = Number(m[2] ?? 0);
      out.length = 0;
      const arm64 = (maj: number, min: number) => withArch('arm64', maj === 8 && min === 0 ? undefined : min === 0 ? `v${maj}` : `v${maj}.${min}`);
      for (let mi = minor; mi >= 0; mi--) out.push(arm64(major, mi));
      if (major === 9) for (let mi = Math.min(minor + 5, 9); mi >= 0; mi--) out.push(arm64(8, mi));
      if (major === 8 || major === 9) armDown(8);
      break;
    }
  }
  return out;
}

/** True when `have` is exactly `want` as far as matching goes (after normalizing both). */
export function samePlatform(want: Platform, have: Platform): boolean {
  const a = normalizePlatform(want);
  const b = normalizePlatform(have);
  if (a.os !== b.os || a.architecture !== b.architecture || (a.variant ?? '') !== (b.variant ?? '')) return false;
  // os.version only distinguishes Windows builds; a request without one accepts any.
  if (a.os === 'windows' && a['os.version'] && b['os.version']) {
    return a['os.version'].split('.').slice(0, 3).join('.') === b['os.version'].split('.').slice(0, 3).join('.');
  }
  return true;
}

/** Whether an image for `have` can run where `want` is asked for. */
export function platformMatches(want: Platform, have: Platform, mode: MatchMode = 'compatible'): boolean {
  return compatiblePlatforms(want, mode).some((c) => samePlatform(c, have));
}

/**
 * The index entry to use for `want`: the first entry matching the most preferred compatible
 * platform (entries without a platform, like attestations, never match).
 */
export function selectManifest(index: ImageIndex, want: Platform, opts: { mode?: MatchMode; what?: string } = {}): Descriptor {
  const candidates = index.manifests.filter((d) => d.platform);
  for (const c of compatiblePlatforms(want, opts.mode)) {
    const found = candidates.find((d) => samePlatform(c, d.platform!));
    if (found) return found;
  }
  const available = [...new Set(candidates.map((d) => formatPlatform(normalizePlatform(d.platform!))))];
  throw new GantryError(
    'PLATFORM_NOT_FOUND',
    `${opts.what ?? 'image index'} has no manifest for ${formatPlatform(normalizePlatform(want))} (available: ${available.length ? available.join(', ') : 'none'})`,
    { available, hint: 'choose one of the available platforms with --platform' },
  );
}
