import { mountPointsUnder } from './mountinfo.js';

/**
 * Paths the in-place mode never snapshots, unpacks over or wipes: the kernel's and the runtime's
 * (/proc, /sys, /dev, every mount point), the builder's own directories (/gantry, /kaniko and the
 * :debug image's /busybox), /etc/mtab (Kaniko: no way to tell whether the runtime or the image
 * made it) and /var/run, where runtimes mount sockets (Kaniko's --ignore-var-run, default true).
 */
export const BUILDER_PATHS = ['/gantry', '/kaniko', '/busybox'] as const;
export const SYSTEM_PATHS = ['/proc', '/sys', '/dev', '/etc/mtab'] as const;

export interface IgnorePathOptions {
  /** Exclude /var/run (Kaniko's --ignore-var-run); default true. */
  ignoreVarRun?: boolean;
  /** `--ignore-path` values, in-root absolute paths. */
  extra?: readonly string[];
  /** The builder's directory when relocated (Kaniko's --kaniko-dir). */
  builderDirs?: readonly string[];
  /** Mount points to skip; default: those under `root` in /proc/self/mountinfo. */
  mountPoints?: readonly string[];
}

/** The in-place ignore list for `root` (usually `/`), deduplicated, in-root absolute paths. */
export function inplaceIgnorePaths(root: string, opts: IgnorePathOptions = {}): string[] {
  const paths = [
    ...SYSTEM_PATHS,
    ...BUILDER_PATHS,
    ...(opts.builderDirs ?? []),
    ...(opts.ignoreVarRun === false ? [] : ['/var/run']),
    ...(opts.extra ?? []),
    ...(opts.mountPoints ?? mountPointsUnder(root)),
  ];
  return [...new Set(paths.map((p) => '/' + p.split('/').filter((c) => c !== '' && c !== '.').join('/')))].filter((p) => p !== '/');
}
