// Assembles the build context of the executor image: three trees COPY'd onto `FROM scratch`.
//   runtime/  node with its own glibc, tini, CA bundle, /etc basics, /kaniko, /tmp  (changes rarely)
//   app/      the CLI bundle and the launcher                                       (every release)
//   debug/    busybox and its applets                                               (:debug only)
import { execFile } from 'node:child_process';
import { access, chmod, copyFile, mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

async function tool(cmd, args, hint) {
  try {
    return (await exec(cmd, args, { maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if (err.code === 'ENOENT') throw new Error(`${cmd} is not installed: ${hint}`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr || err.message).trim()}`);
  }
}

/** The shared objects `ldd` says `binary` loads: [{ name (as the binary asks for it), path }]. */
export function parseLdd(text) {
  const libs = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m) libs.push({ name: m[1], path: m[2] });
    else if (/=>\s+not found/.test(line)) throw new Error(`ldd: ${line.trim()}`);
  }
  return libs;
}

/**
 * Copies a dynamically linked `binary` to `dest` with every library it loads in `libDir`, and
 * points its ELF interpreter and RPATH there: the copy runs whatever is (or is not) under /lib,
 * which in-place builds overwrite with the base image's files. DT_RPATH (not RUNPATH) so that
 * libraries loading libraries also search `libDir`.
 */
export async function hoistBinary(binary, dest, { libDir, imageLibDir }) {
  const interp = (await tool('patchelf', ['--print-interpreter', binary], 'apt-get install patchelf')).trim();
  const libs = parseLdd(await tool('ldd', [binary], 'ldd comes with libc-bin'));
  await mkdir(libDir, { recursive: true });
  await copyFile(await realpath(interp), join(libDir, basename(interp)));
  await chmod(join(libDir, basename(interp)), 0o755);
  for (const lib of libs) {
    await copyFile(await realpath(lib.path), join(libDir, lib.name));
    await chmod(join(libDir, lib.name), 0o644);
  }
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(binary, dest);
  await chmod(dest, 0o755);
  await tool('patchelf', ['--set-interpreter', `${imageLibDir}/${basename(interp)}`, '--force-rpath', '--set-rpath', imageLibDir, dest], 'apt-get install patchelf');
  return { interpreter: basename(interp), libraries: libs.map((l) => l.name) };
}

/** Throws unless `path` is a statically linked executable (it must run with nothing else in the image). */
export async function assertStatic(path, hint) {
  try {
    await access(path);
  } catch {
    throw new Error(`${path} not found: ${hint}`);
  }
  // ldd exits 1 with "not a dynamic executable" for static binaries, 0 for static-pie.
  const r = await exec('ldd', [path]).catch((err) => err);
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (!/not a dynamic executable|statically linked/.test(text)) throw new Error(`${path} is not a static executable (ldd: ${text.trim()}); ${hint}`);
}

const PASSWD = `root:x:0:0:root:/root:/busybox/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`;
const GROUP = `root:x:0:
nogroup:x:65534:
`;
// glibc >= 2.34 has the files and dns modules built in, so these lines dlopen nothing.
const NSSWITCH = `passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
`;

async function put(path, text, mode) {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
  await chmod(path, mode);
}

async function dir(path, mode) {
  await mkdir(path, { recursive: true });
  await chmod(path, mode);
}

export const HOST_FILES = {
  tini: '/usr/bin/tini-static',
  busybox: '/bin/busybox',
  caBundle: '/etc/ssl/certs/ca-certificates.crt',
};

/** runtime/: /gantry/{node,lib,tini}, CA bundle, /etc, /kaniko, /root, /tmp. */
export async function assembleRuntime(root, { node = process.execPath, files = HOST_FILES } = {}) {
  const hoisted = await hoistBinary(node, join(root, 'gantry/node'), { libDir: join(root, 'gantry/lib'), imageLibDir: '/gantry/lib' });
  await assertStatic(files.tini, 'apt-get install tini (it ships /usr/bin/tini-static)');
  await copyFile(files.tini, join(root, 'gantry/tini'));
  await chmod(join(root, 'gantry/tini'), 0o755);
  // Kaniko's place for the CA bundle: /kaniko is never overwritten by in-place builds, /etc is.
  await mkdir(join(root, 'kaniko/ssl/certs'), { recursive: true });
  await copyFile(files.caBundle, join(root, 'kaniko/ssl/certs/ca-certificates.crt'));
  await chmod(join(root, 'kaniko/ssl/certs/ca-certificates.crt'), 0o644);
  await mkdir(join(root, 'etc/ssl/certs'), { recursive: true });
  await symlink('/kaniko/ssl/certs/ca-certificates.crt', join(root, 'etc/ssl/certs/ca-certificates.crt'));
  await put(join(root, 'etc/passwd'), PASSWD, 0o644);
  await put(join(root, 'etc/group'), GROUP, 0o644);
  await put(join(root, 'etc/nsswitch.conf'), NSSWITCH, 0o644);
  await dir(join(root, 'kaniko/.docker'), 0o777);
  // Kaniko makes /kaniko world-writable so the executor can run as a non-root user.
  await chmod(join(root, 'kaniko'), 0o777);
  await dir(join(root, 'root'), 0o700);
  await dir(join(root, 'tmp'), 0o1777);
  return hoisted;
}

/** app/: the bundle and the launcher under its names (gantry, executor, warmer). */
export async function assembleApp(root, { bundle, launcher }) {
  await mkdir(join(root, 'gantry'), { recursive: true });
  await copyFile(bundle, join(root, 'gantry/gantry.cjs'));
  await chmod(join(root, 'gantry/gantry.cjs'), 0o644);
  await copyFile(launcher, join(root, 'gantry/gantry'));
  await chmod(join(root, 'gantry/gantry'), 0o755);
  await symlink('gantry', join(root, 'gantry/executor'));
  await symlink('gantry', join(root, 'gantry/warmer'));
  // COPY gives a merged directory the source's metadata (as BuildKit does): keep runtime/'s modes.
  await chmod(join(root, 'gantry'), 0o755);
  await dir(join(root, 'kaniko'), 0o777);
  await symlink('/gantry/executor', join(root, 'kaniko/executor'));
  await symlink('/gantry/warmer', join(root, 'kaniko/warmer'));
}

/** debug/: /busybox/busybox with one symlink per applet, and /bin/sh as Kaniko's debug image has it. */
export async function assembleDebug(root, { busybox = HOST_FILES.busybox } = {}) {
  await assertStatic(busybox, 'apt-get install busybox-static');
  await mkdir(join(root, 'busybox'), { recursive: true });
  await copyFile(busybox, join(root, 'busybox/busybox'));
  await chmod(join(root, 'busybox/busybox'), 0o755);
  const applets = (await tool(busybox, ['--list'], 'apt-get install busybox-static')).split('\n').filter((a) => /^[A-Za-z0-9_.[-]+$/.test(a) && a !== 'busybox');
  for (const a of applets) await symlink('busybox', join(root, 'busybox', a));
  await mkdir(join(root, 'bin'), { recursive: true });
  await symlink('/busybox/sh', join(root, 'bin/sh'));
  return { applets: applets.length };
}

/** Compiles launcher.c into a static binary at `out`. */
export async function compileLauncher(source, out) {
  const cc = process.env.CC || 'gcc';
  await tool(cc, ['-static', '-Os', '-s', '-Wall', '-Werror', '-o', out, source], 'apt-get install gcc libc6-dev (a static libc.a is needed)');
  await assertStatic(out, `${cc} did not produce a static binary`);
}
