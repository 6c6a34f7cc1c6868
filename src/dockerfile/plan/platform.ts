/** Platforms as `os/arch[/variant]` and the automatic TARGET and BUILD build args. */
import { GantryError } from '../../util/errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64', x86: '386', i386: '386', aarch64: 'arm64', armhf: 'arm', armel: 'arm',
};

/** `linux/arm64`, `linux/arm/v7`, `arm64` (os defaults to linux). Normalises common aliases. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().toLowerCase().split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) {
    throw new GantryError('INVALID_ARGUMENT', `invalid platform "${text}"`, { hint: 'use os/arch[/variant], e.g. linux/amd64 or linux/arm/v7' });
  }
  let [os, arch, variant] = parts.length === 1 ? ['linux', parts[0]!, undefined] : [parts[0]!, parts[1]!, parts[2]];
  arch = ARCH_ALIASES[arch] ?? arch;
  if (text.toLowerCase().includes('armhf')) variant ??= 'v7';
  if (text.toLowerCase().includes('armel')) variant ??= 'v6';
  if (arch === 'arm64' && variant === 'v8') variant = undefined;
  const p: Platform = { os, architecture: arch };
  if (variant) p.variant = variant;
  return p;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** The platform this process runs on, in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips64el: 'mips64le' };
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  const p: Platform = { os, architecture: arch[process.arch] ?? process.arch };
  if (process.arch === 'arm') p.variant = 'v7';
  return p;
}

/** The automatic platform args BuildKit defines (usable after `ARG NAME`, and in FROM). */
export const PLATFORM_ARG_NAMES = [
  'TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT', 'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT',
] as const;

export function platformArgs(target: Platform, build: Platform): Record<string, string> {
  return {
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
  };
}
