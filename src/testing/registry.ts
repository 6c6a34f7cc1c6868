import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { makeCa, makeServerCert, makeSigningCert } from './certs.js';
import { run } from './exec.js';
import { freePort } from './ports.js';
import { startTokenServer, type AccessRule, type TokenRequestRecord, type TokenServer } from './token-server.js';
import { tempDir } from './tmp.js';

export type { AccessRule, TokenRequestRecord } from './token-server.js';

/**
 * Real registries for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a free
 * port, in three flavours: plain HTTP; TLS (test CA) + htpasswd Basic auth; Bearer tokens from an
 * in-process token server whose ES256 JWTs (x5c header) the registry verifies. Each instance owns a
 * temp dir (config, certs, storage) that stop() removes.
 */

/** A real distribution (Debian docker-registry) instance on 127.0.0.1, owned by one test. */
export interface TestRegistry {
  kind: 'plain' | 'tls-htpasswd' | 'token';
  /** "127.0.0.1:PORT": the reference prefix for images. */
  host: string;
  /** "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT". */
  url: string;
  /** PEM of the test CA (TLS kinds). */
  caFile?: string;
  /** A directory holding `ca.crt`, as skopeo's --cert-dir / --dest-cert-dir expect (TLS kinds). */
  certDir?: string;
  /** Valid credentials (auth kinds). */
  username?: string;
  password?: string;
  /** Registry storage root (tests may inspect or corrupt it). */
  dataDir: string;
  /** Registry output so far (stderr and access log), for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

export interface TokenRegistry extends TestRegistry {
  kind: 'token';
  tokenServer: {
    url: string;
    realm: string;
    service: string;
    requests: TokenRequestRecord[];
    /** refresh token -> account */
    refreshTokens: Map<string, string>;
  };
}

export interface PlainOptions {
  kind: 'plain';
}
export interface TlsHtpasswdOptions {
  kind: 'tls-htpasswd';
  username?: string;
  password?: string;
}
export interface TokenOptions {
  kind: 'token';
  /** account -> password; default one user (the returned username/password). */
  users?: Record<string, string>;
  /** Serve both the registry and the token server over TLS with the test CA. */
  tls?: boolean;
  /** account -> rules; accounts absent from a given map get no access. Default: valid users get everything. */
  access?: Record<string, AccessRule[]>;
  /** Issue pull-only tokens without credentials. */
  anonymousPull?: boolean;
  /**
   * Token lifetime, in `exp` and `expires_in` (default 300 s). distribution allows 60 s of clock
   * skew past `exp`, so a value <= -61 mints tokens the registry rejects with error="invalid_token".
   */
  expiresInSeconds?: number;
  /** Default true; false makes POST /token answer 404 (servers without OAuth2). */
  oauthPost?: boolean;
}
export type RegistryOptions = PlainOptions | TlsHtpasswdOptions | TokenOptions;

const REGISTRY_BIN = process.env.GANTRY_TEST_REGISTRY_BIN ?? '/usr/bin/docker-registry';
export const TOKEN_SERVICE = 'gantry-test-registry';
export const TOKEN_ISSUER = 'gantry-test-issuer';
const DEFAULT_USER = 'gantry';
const DEFAULT_PASSWORD = 'gantry-secret-pw';
const START_TIMEOUT_MS = 15_000;
const MAX_LOG_BYTES = 1 << 20;

// Children killed and temp dirs removed synchronously if the test process exits without stop().
const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    const killAll = () => {
      for (const c of live) c.kill('SIGKILL');
      for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
    };
    process.once('exit', killAll);
    // 'exit' does not run when a signal ends the process (e.g. the test runner's timeout): kill the
    // registries, then die of the same signal as we would have without this handler.
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        killAll();
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
      });
    }
  }
}
function trackChild(child: ChildProcess): void {
  installExitHook();
  live.add(child);
  child.once('exit', () => live.delete(child));
}

export function startRegistry(opts: PlainOptions): Promise<TestRegistry>;
export function startRegistry(opts: TlsHtpasswdOptions): Promise<TestRegistry>;
export function startRegistry(opts: TokenOptions): Promise<TokenRegistry>;
export async function startRegistry(opts: RegistryOptions): Promise<TestRegistry | TokenRegistry> {
  const tmp = await tempDir(`registry-${opts.kind}`);
  installExitHook();
  liveDirs.add(tmp.path);
  const removeTmp = async () => {
    await tmp.cleanup();
    liveDirs.delete(tmp.path);
  };
  let tokenServer: TokenServer | undefined;
  try {
    const dataDir = join(tmp.path, 'data');
    const certDir = join(tmp.path, 'certs');
    await mkdir(dataDir);
    const tlsWanted = opts.kind === 'tls-htpasswd' || (opts.kind === 'token' && opts.tls === true);
    let tls: { caFile: string; certFile: string; keyFile: string } | undefined;
    if (tlsWanted) {
      // certDir holds only ca.crt: skopeo/containers treat any *.key there as a client key.
      await mkdir(certDir);
      const ca = await makeCa(tmp.path);
      const server = await makeServerCert(ca, tmp.path);
      const caFile = join(certDir, 'ca.crt');
      await copyFile(ca.certFile, caFile);
      tls = { caFile, ...server };
    }

    const authLines: string[] = [];
    let username: string | undefined;
    let password: string | undefined;
    if (opts.kind === 'tls-htpasswd') {
      username = opts.username ?? DEFAULT_USER;
      password = opts.password ?? DEFAULT_PASSWORD;
      // distribution only accepts bcrypt entries.
      const entry = await run('htpasswd', ['-Bbn', '-C', '4', username, password], { check: true });
      const htpasswdFile = join(tmp.path, 'htpasswd');
      await writeFile(htpasswdFile, entry.stdout.trim() + '\n');
      authLines.push('auth:', '  htpasswd:', '    realm: gantry-test', `    path: ${htpasswdFile}`);
    } else if (opts.kind === 'token') {
      const users = opts.users ?? { [DEFAULT_USER]: DEFAULT_PASSWORD };
      const first = Object.entries(users)[0];
      if (first) [username, password] = first;
      const signer = await makeSigningCert(tmp.path);
      const certPem = await readFile(signer.certFile, 'utf8');
      const der = new X509Certificate(certPem).raw.toString('base64');
      tokenServer = await startTokenServer({
        service: TOKEN_SERVICE,
        issuer: TOKEN_ISSUER,
        users,
        ...(opts.access ? { access: opts.access } : {}),
        anonymousPull: opts.anonymousPull ?? false,
        signingKeyPem: await readFile(signer.keyFile, 'utf8'),
        signingCertDerBase64: der,
        ...(tls ? { tls: { cert: await readFile(tls.certFile, 'utf8'), key: await readFile(tls.keyFile, 'utf8') } } : {}),
        expiresInSeconds: opts.expiresInSeconds ?? 300,
        oauthPost: opts.oauthPost ?? true,
      });
      authLines.push(
        'auth:',
        '  token:',
        `    realm: ${tokenServer.realm}`,
        `    service: ${TOKEN_SERVICE}`,
        `    issuer: ${TOKEN_ISSUER}`,
        `    rootcertbundle: ${signer.certFile}`,
      );
    }

    const { child, port, logs } = await spawnRegistry(tmp.path, dataDir, tls, authLines);
    const scheme = tls ? 'https' : 'http';
    const host = `127.0.0.1:${port}`;
    const ts = tokenServer;
    let stopped: Promise<void> | undefined;
    const stop = () =>
      (stopped ??= (async () => {
        await killChild(child);
        await ts?.stop();
        await removeTmp();
      })());
    const base: TestRegistry = {
      kind: opts.kind,
      host,
      url: `${scheme}://${host}`,
      dataDir,
      logs,
      stop,
      ...(tls ? { caFile: tls.caFile, certDir } : {}),
      ...(username !== undefined ? { username, password } : {}),
    };
    if (opts.kind === 'token' && ts) {
      const tokenInfo = { url: ts.url, realm: ts.realm, service: ts.service, requests: ts.requests, refreshTokens: ts.refreshTokens };
      return { ...base, kind: 'token', tokenServer: tokenInfo } satisfies TokenRegistry;
    }
    return base;
  } catch (e) {
    await tokenServer?.stop();
    await removeTmp();
    throw e;
  }
}

function configYaml(dataDir: string, port: number, tls: { certFile: string; keyFile: string } | undefined, authLines: string[]): string {
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  formatter: text',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${dataDir}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(tls ? ['  tls:', `    certificate: ${tls.certFile}`, `    key: ${tls.keyFile}`] : []),
    ...authLines,
    'health:',
    '  storagedriver:',
    '    enabled: false',
    '',
  ].join('\n');
}

async function spawnRegistry(
  dir: string,
  dataDir: string,
  tls: { caFile: string; certFile: string; keyFile: string } | undefined,
  authLines: string[],
): Promise<{ child: ChildProcess; port: number; logs: () => string }> {
  // REGISTRY_* variables override the config file; never let the caller's environment leak in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
  const ca = tls ? await readFile(tls.caFile) : undefined;
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freePort();
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, configYaml(dataDir, port, tls, authLines));
    const child = spawn(REGISTRY_BIN, ['serve', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let output = '';
    const collect = (b: Buffer) => {
      if (output.length < MAX_LOG_BYTES) output += b.toString('utf8');
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const logs = () => output;
    try {
      await waitReady(child, `${tls ? 'https' : 'http'}://127.0.0.1:${port}/v2/`, ca);
      return { child, port, logs };
    } catch (e) {
      await killChild(child);
      lastError = new Error(`docker-registry did not start on 127.0.0.1:${port}: ${(e as Error).message}\n--- registry output ---\n${output}`);
      // Another process took the port between freePort() and bind: try a new one.
      if (!/address already in use/.test(output)) break;
    }
  }
  throw lastError ?? new Error('docker-registry did not start');
}

function ping(url: string, ca: Buffer | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { method: 'GET', ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function waitReady(child: ChildProcess, url: string, ca: Buffer | undefined): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? code}`));
  let last = '';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`docker-registry ${exited}`);
    try {
      const status = await ping(url, ca);
      if (status === 200 || status === 401) return;
      last = `GET /v2/ answered ${status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${START_TIMEOUT_MS} ms waiting for ${url} (${last})`);
}

function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
