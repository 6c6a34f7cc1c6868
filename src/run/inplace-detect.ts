import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMountinfo } from '../fs/index.js';

/**
 * Is this process inside a container? The in-place backend unpacks images over `/` and deletes
 * everything else there between stages, so on a workstation or CI host it would destroy the
 * machine. Probes, in the order Kaniko's GetContainerRuntime uses most of them: runtime marker
 * files, the `container` variable (systemd's convention, set by podman and LXC), Kubernetes'
 * service-account mount, container names in /proc/self/cgroup (cgroup v1, and v2 hosts without a
 * cgroup namespace), and an overlay or tmpfs root filesystem (cgroup v2 with a private cgroup
 * namespace shows only `0::/`, Kaniko's false negative kaniko#1592).
 */

export interface ContainerDetection {
  inContainer: boolean;
  /** The first probe that answered, or why none did. */
  evidence: string;
}

export interface ContainerProbeOptions {
  /** Where the probed files are; default `/`. Tests point it at a fake tree. */
  probeRoot?: string;
  env?: NodeJS.ProcessEnv;
}

const MARKER_FILES = [
  ['/.dockerenv', 'Docker'],
  ['/run/.containerenv', 'Podman'],
  ['/run/secrets/kubernetes.io/serviceaccount', 'Kubernetes'],
  ['/var/run/secrets/kubernetes.io/serviceaccount', 'Kubernetes'],
  ['/__runsc_containers__', 'gVisor'],
] as const;

const CGROUP_HINTS = /\b(docker|kubepods|containerd|libpod|crio|cri-containerd|lxc|garden|actions_job|buildkit)\b/;
const CONTAINER_ROOT_FS = new Set(['overlay', 'aufs', 'fuse-overlayfs', 'tmpfs', 'rootfs']);

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function detectContainer(opts: ContainerProbeOptions = {}): ContainerDetection {
  const root = opts.probeRoot ?? '/';
  const env = opts.env ?? process.env;
  for (const [file, what] of MARKER_FILES) {
    if (existsSync(join(root, file))) return { inContainer: true, evidence: `${file} exists (${what})` };
  }
  if (env.container) return { inContainer: true, evidence: `the environment variable container=${env.container}` };
  const cgroup = readText(join(root, 'proc/self/cgroup'));
  const hint = cgroup && CGROUP_HINTS.exec(cgroup);
  if (hint) return { inContainer: true, evidence: `/proc/self/cgroup mentions ${hint[1]}` };
  const mountinfo = readText(join(root, 'proc/self/mountinfo'));
  if (mountinfo) {
    // The last mount on / is the one in effect.
    let rootType: string | undefined;
    for (const line of mountinfo.split('\n')) {
      if (parseMountinfo(line)[0] !== '/') continue;
      const fields = line.split(' ');
      const sep = fields.indexOf('-');
      if (sep > 0) rootType = fields[sep + 1];
    }
    if (rootType && CONTAINER_ROOT_FS.has(rootType)) return { inContainer: true, evidence: `the root filesystem is ${rootType}` };
  }
  return { inContainer: false, evidence: 'no container marker file, no container cgroup, and / is not an overlay or tmpfs' };
}
