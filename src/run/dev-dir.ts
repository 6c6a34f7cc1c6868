import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { wrapError } from '../util/errors.js';
import type { LayerStack } from './layer-stack.js';

/**
 * The RUN's `/dev`: a per-RUN host directory bind-mounted over the image's /dev, so nothing a RUN
 * writes there (or that we put there) can reach a layer, like BuildKit's tmpfs /dev. It holds the
 * mount points for the host's null, zero, full, random, urandom and tty nodes, `pts` (a devpts
 * newinstance) with the `ptmx` symlink apt needs, `shm` (a tmpfs) and the usual fd symlinks.
 */

export const HOST_DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'] as const;

/**
 * Extra CA certificates. Decision: they are NOT bound over the image's
 * /etc/ssl/certs/ca-certificates.crt: `update-ca-certificates` (run by `apt-get install
 * ca-certificates`) renames a new bundle onto that path and would fail with EBUSY on a mount
 * point, and images without the file would need a skeleton entry. Instead they appear inside the
 * RUN's private /dev, which never reaches a layer:
 * - EXTRA_CA_FILE: the extra certificates only (for NODE_EXTRA_CA_CERTS);
 * - CA_BUNDLE_FILE: the image's system bundle as it was when the RUN started, plus the extras
 *   (for SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO, ...).
 * The sandbox never changes the environment; `caEnvironment()` lists the variables a caller may
 * add to RunSpec.env.
 */
export const CA_DIR = '/dev/gantry';
export const EXTRA_CA_FILE = `${CA_DIR}/extra-ca-certificates.crt`;
export const CA_BUNDLE_FILE = `${CA_DIR}/ca-certificates.crt`;

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

/** Environment entries pointing common TLS stacks at the files above. */
export function caEnvironment(): string[] {
  return [
    `SSL_CERT_FILE=${CA_BUNDLE_FILE}`,
    `NODE_EXTRA_CA_CERTS=${EXTRA_CA_FILE}`,
    `REQUESTS_CA_BUNDLE=${CA_BUNDLE_FILE}`,
    `CURL_CA_BUNDLE=${CA_BUNDLE_FILE}`,
    `GIT_SSL_CAINFO=${CA_BUNDLE_FILE}`,
  ];
}

export async function makeDevDir(dir: string, stack: LayerStack, extraCaFiles: readonly string[] = []): Promise<void> {
  await mkdir(dir);
  await chmod(dir, 0o755);
  for (const name of HOST_DEVICES) await writeFile(join(dir, name), '', { mode: 0o666 });
  for (const name of ['pts', 'shm', 'mqueue']) await mkdir(join(dir, name));
  await chmod(join(dir, 'shm'), 0o1777);
  const links: Array<[string, string]> = [
    ['ptmx', 'pts/ptmx'],
    ['fd', '/proc/self/fd'],
    ['stdin', '/proc/self/fd/0'],
    ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'],
    ['core', '/proc/kcore'],
  ];
  for (const [name, target] of links) await symlink(target, join(dir, name));
  if (extraCaFiles.length === 0) return;

  const extras: Buffer[] = [];
  for (const file of extraCaFiles) {
    try {
      const pem = await readFile(file);
      extras.push(pem, pem.length > 0 && pem[pem.length - 1] !== 0x0a ? Buffer.from('\n') : Buffer.alloc(0));
    } catch (err) {
      throw wrapError(err, `reading extra CA file ${file}`);
    }
  }
  let system = Buffer.alloc(0);
  for (const path of SYSTEM_BUNDLES) {
    const res = await stack.resolve(path, { followLast: true });
    if (res.missing.length === 0 && res.leaf?.kind === 'file') {
      system = await readFile(join(stack.layers[res.leaf.layer], res.path));
      if (system.length > 0 && system[system.length - 1] !== 0x0a) system = Buffer.concat([system, Buffer.from('\n')]);
      break;
    }
  }
  const caDir = join(dir, CA_DIR.slice('/dev/'.length));
  await mkdir(caDir);
  await chmod(caDir, 0o755);
  await writeFile(join(dir, EXTRA_CA_FILE.slice('/dev/'.length)), Buffer.concat(extras), { mode: 0o644 });
  await writeFile(join(dir, CA_BUNDLE_FILE.slice('/dev/'.length)), Buffer.concat([system, ...extras]), { mode: 0o644 });
}
