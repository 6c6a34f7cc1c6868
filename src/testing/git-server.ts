/**
 * A real git smart-HTTP server for tests: node:http in front of `git http-backend` run as a CGI
 * per request (the same program Apache and nginx front in production), on 127.0.0.1 with a free
 * port. Optional Basic auth; every request is logged (method, path, whether it carried
 * credentials, and the start of upload-pack bodies so tests can see wants and `deepen`).
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { run } from './exec.js';

export interface GitServerOptions {
  /** Directory holding the bare repositories (GIT_PROJECT_ROOT). */
  root: string;
  auth?: { username: string; password: string };
  /** Answers upload-pack POSTs with this status when the body wants one of these commits. */
  refuseWants?: { oids: string[]; status: number };
  /** Serve HTTPS with this key pair (see certs.ts) instead of plain HTTP. */
  tls?: { certFile: string; keyFile: string };
}

export interface GitRequestLog {
  method: string;
  path: string;
  query: string;
  authorized: boolean;
  hadCredentials: boolean;
  status: number;
  /** First 4 KiB of the request body (upload-pack requests are pkt-line text). */
  body: string;
}

export interface GitServer {
  /** http://127.0.0.1:PORT (https:// with `tls`) */
  url: string;
  host: string;
  port: number;
  requests: GitRequestLog[];
  close(): Promise<void>;
}

function checkAuth(req: IncomingMessage, auth: GitServerOptions['auth']): { ok: boolean; had: boolean } {
  const header = req.headers.authorization;
  if (!auth) return { ok: true, had: !!header };
  if (!header || !header.startsWith('Basic ')) return { ok: false, had: false };
  const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = decoded.slice(0, colon);
  const pass = decoded.slice(colon + 1);
  return { ok: user === auth.username && pass === auth.password, had: true };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function handle(opts: GitServerOptions, log: GitRequestLog[], children: Set<ReturnType<typeof spawn>>) {
  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const entry: GitRequestLog = { method: req.method ?? 'GET', path: url.pathname, query: url.search.slice(1), authorized: false, hadCredentials: false, status: 0, body: '' };
    log.push(entry);
    const auth = checkAuth(req, opts.auth);
    entry.hadCredentials = auth.had;
    entry.authorized = auth.ok;
    if (!auth.ok) {
      entry.status = 401;
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"', 'content-type': 'text/plain' });
      res.end('authentication required\n');
      await readBody(req).catch(() => undefined);
      return;
    }
    // Bodies are small in tests; buffering keeps CONTENT_LENGTH exact and lets us log them.
    const body = await readBody(req);
    entry.body = body.subarray(0, 4096).toString('latin1');
    if (opts.refuseWants && req.method === 'POST' && opts.refuseWants.oids.some((oid) => entry.body.includes(`want ${oid}`))) {
      entry.status = opts.refuseWants.status;
      res.writeHead(opts.refuseWants.status, { 'content-type': 'text/plain' });
      res.end('refused by test server\n');
      return;
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: opts.root,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: opts.root,
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      CONTENT_LENGTH: String(body.length),
      REMOTE_ADDR: '127.0.0.1',
      SERVER_PROTOCOL: 'HTTP/1.1',
      GATEWAY_INTERFACE: 'CGI/1.1',
    };
    if (opts.auth) env.REMOTE_USER = opts.auth.username;
    if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);
    if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = String(req.headers['content-encoding']);
    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    child.on('close', () => children.delete(child));
    child.stdin.on('error', () => undefined);
    child.stdin.end(body);
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    // CGI output: header lines, a blank line, then the body, streamed straight through.
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        if (!res.write(chunk)) {
          child.stdout.pause();
          res.once('drain', () => child.stdout.resume());
        }
        return;
      }
      head = Buffer.concat([head, chunk]);
      let sep = head.indexOf('\r\n\r\n');
      let sepLen = 4;
      if (sep < 0) {
        sep = head.indexOf('\n\n');
        sepLen = 2;
      }
      if (sep < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, sep).toString('latin1').split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      entry.status = status;
      res.writeHead(status, headers);
      res.write(head.subarray(sep + sepLen));
    });
    child.on('close', (code) => {
      if (!headersDone) {
        entry.status = 500;
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`git http-backend exited with ${code}: ${stderr}\n`);
        return;
      }
      res.end();
    });
  };
}

export async function startGitServer(opts: GitServerOptions): Promise<GitServer> {
  const requests: GitRequestLog[] = [];
  const children = new Set<ReturnType<typeof spawn>>();
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(opts, requests, children)(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  };
  const server: Server = opts.tls
    ? createHttpsServer({ cert: await readFile(opts.tls.certFile), key: await readFile(opts.tls.keyFile) }, listener)
    : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of children) c.kill('SIGKILL');
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface FixtureRepo {
  /** Path of the bare repository under the server root, e.g. `repo.git`. */
  name: string;
  /** main~1 (tagged v1, annotated, and `light`, lightweight); has sub/dir, run.sh, symlinks. */
  c1: string;
  /** main's tip: changes a.txt to "two". */
  c2: string;
  /** feature~1 and feature's tip (also refs/pull/1/head). Branch `submodules` adds submodule `lib` (this repository at f2, by relative URL) to c1;
   * `submodules-ssh` points it at an SSH URL. */
  f1: string;
  f2: string;
}

/**
 * Builds the standard fixture repository with the git CLI (test setup only: the product never
 * runs git) as a bare repository `name` under `root`.
 */
export async function makeFixtureRepo(root: string, name = 'repo.git'): Promise<FixtureRepo> {
  const work = join(root, `${name}.work`);
  await mkdir(join(work, 'sub', 'dir'), { recursive: true });
  let tick = 0;
  const env = (): NodeJS.ProcessEnv => {
    tick++;
    const date = `2024-01-01T00:00:${String(tick).padStart(2, '0')}Z`;
    return {
      PATH: process.env.PATH,
      HOME: root,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 'Test',
      GIT_AUTHOR_EMAIL: 'test@example.com',
      GIT_COMMITTER_NAME: 'Test',
      GIT_COMMITTER_EMAIL: 'test@example.com',
      GIT_AUTHOR_DATE: date,
      GIT_COMMITTER_DATE: date,
    };
  };
  const git = async (...args: string[]) => (await run('git', args, { cwd: work, env: env(), check: true })).stdout.trim();
  await git('init', '-q', '-b', 'main');
  await writeFile(join(work, 'Dockerfile'), 'FROM scratch\nCOPY . /\n');
  await writeFile(join(work, 'a.txt'), 'one\n');
  await writeFile(join(work, 'sub', 'dir', 'file.txt'), 'deep\n');
  await writeFile(join(work, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(work, 'run.sh'), 0o755);
  await symlink('a.txt', join(work, 'link'));
  await symlink('/etc', join(work, 'sub', 'escape'));
  await git('add', '-A');
  await git('commit', '-q', '-m', 'c1');
  const c1 = await git('rev-parse', 'HEAD');
  await git('tag', '-a', 'v1', '-m', 'version 1');
  await git('tag', 'light');
  await writeFile(join(work, 'a.txt'), 'two\n');
  await git('commit', '-q', '-am', 'c2');
  const c2 = await git('rev-parse', 'HEAD');
  await git('checkout', '-q', '-b', 'feature', c1);
  await writeFile(join(work, 'feature.txt'), 'f1\n');
  await git('add', 'feature.txt');
  await git('commit', '-q', '-m', 'f1');
  const f1 = await git('rev-parse', 'HEAD');
  await writeFile(join(work, 'feature.txt'), 'f2\n');
  await git('commit', '-q', '-am', 'f2');
  const f2 = await git('rev-parse', 'HEAD');
  // A branch with a submodule entry (a gitlink plus .gitmodules), never fetched by itself.
  await git('checkout', '-q', '-b', 'submodules', c1);
  // Relative URL: the submodule is this same repository, at feature's tip.
  await writeFile(join(work, '.gitmodules'), '[submodule "lib"]\n\tpath = lib\n\turl = ../repo.git\n');
  await git('add', '.gitmodules');
  await git('update-index', '--add', '--cacheinfo', `160000,${f2},lib`);
  await git('commit', '-q', '-m', 'submodule');
  await git('checkout', '-q', '-b', 'submodules-ssh');
  await writeFile(join(work, '.gitmodules'), '[submodule "lib"]\n\tpath = lib\n\turl = git@example.invalid:o/lib.git\n');
  // Not `commit -a`: the gitlink has no checkout here and would be recorded as deleted.
  await git('add', '.gitmodules');
  await git('commit', '-q', '-m', 'ssh submodule');
  await git('checkout', '-q', 'main');
  await run('git', ['clone', '-q', '--bare', work, join(root, name)], { env: env(), check: true });
  await run('git', ['--git-dir', join(root, name), 'update-ref', 'refs/pull/1/head', f2], { env: env(), check: true });
  return { name, c1, c2, f1, f2 };
}
