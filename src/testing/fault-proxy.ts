import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TestRegistry } from './registry.js';

export type FaultAction =
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Forward the upstream response, then reset the connection after `bytes` body bytes. */
  | { kind: 'reset-response-after'; bytes: number }
  /** Reset the client connection before forwarding anything (e.g. in the middle of an upload). */
  | { kind: 'reset-request' }
  | { kind: 'delay'; ms: number };

export interface FaultRule {
  /** `path` is tested against the request target (path and query). */
  match: { method?: string; path?: RegExp };
  /** How many matching requests the rule applies to; default 1, `Infinity` for all. */
  times?: number;
  action: FaultAction;
}

export interface FaultHit {
  method: string;
  path: string;
  /** Index in `rules` of the rule applied, if any. */
  rule?: number;
}

export interface FaultProxy {
  host: string;
  url: string;
  /** Live list: tests may push rules while the proxy runs. */
  rules: FaultRule[];
  hits: FaultHit[];
  stop(): Promise<void>;
}

function reset(socket: Socket | null | undefined): void {
  if (!socket) return;
  // An RST, not a FIN: what a dropped connection looks like to a client.
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
  else socket.destroy();
}

/**
 * An HTTP proxy in front of a test registry that injects failures per request. Clients talk plain
 * HTTP to it; the Host header is passed through so the registry's absolute Location URLs point back
 * at the proxy and every follow-up request (upload PATCH/PUT) is seen and can be faulted too.
 */
export async function startFaultProxy(upstream: TestRegistry, rules: FaultRule[] = []): Promise<FaultProxy> {
  const upstreamUrl = new URL(upstream.url);
  const ca = upstream.caFile ? readFileSync(upstream.caFile) : undefined;
  const used = new WeakMap<FaultRule, number>();
  const hits: FaultHit[] = [];
  const proxy: Omit<FaultProxy, 'host' | 'url' | 'stop'> = { rules, hits };

  const pick = (method: string, path: string): number | undefined => {
    for (let i = 0; i < proxy.rules.length; i++) {
      const rule = proxy.rules[i]!;
      if (rule.match.method && rule.match.method.toUpperCase() !== method) continue;
      if (rule.match.path && !rule.match.path.test(path)) continue;
      const n = used.get(rule) ?? 0;
      if (n >= (rule.times ?? 1)) continue;
      used.set(rule, n + 1);
      return i;
    }
    return undefined;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, resetAfter?: number) => {
    const headers: OutgoingHttpHeaders = { ...req.headers };
    // The registry builds Location from Host and the forwarded scheme: make both name the proxy.
    headers['x-forwarded-proto'] = 'http';
    const send = upstreamUrl.protocol === 'https:' ? httpsRequest : httpRequest;
    const up = send(
      { protocol: upstreamUrl.protocol, hostname: upstreamUrl.hostname, port: upstreamUrl.port, method: req.method, path: req.url, headers, ca },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.headers);
        if (resetAfter === undefined) {
          upRes.pipe(res);
          return;
        }
        let sent = 0;
        const cut = () => {
          upRes.destroy();
          reset(res.socket);
        };
        if (resetAfter <= 0) {
          res.flushHeaders();
          res.socket?.write(Buffer.alloc(0), cut);
          return;
        }
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= resetAfter) return;
          const room = resetAfter - sent;
          if (chunk.length < room) {
            sent += chunk.length;
            res.write(chunk);
            return;
          }
          sent = resetAfter;
          res.write(chunk.subarray(0, room), cut);
        });
        // A body shorter than the cut point is forwarded whole.
        upRes.on('end', () => {
          if (sent < resetAfter) res.end();
        });
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`fault proxy: upstream error: ${e.message}`);
      } else reset(res.socket);
    });
    // A client that goes away mid-request must not leave a half-open upload at the registry.
    res.once('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  };

  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const index = pick(method, path);
    const hit: FaultHit = { method, path };
    if (index !== undefined) hit.rule = index;
    hits.push(hit);
    const action = index === undefined ? undefined : proxy.rules[index]!.action;
    switch (action?.kind) {
      case undefined:
        return forward(req, res);
      case 'status': {
        req.resume();
        const body = action.body ?? '';
        res.writeHead(action.status, { 'content-length': Buffer.byteLength(body), ...action.headers });
        res.end(body);
        return;
      }
      case 'reset-request':
        return reset(req.socket);
      case 'reset-response-after':
        return forward(req, res, action.bytes);
      case 'delay': {
        const timer = setTimeout(() => forward(req, res), action.ms);
        res.once('close', () => clearTimeout(timer));
        return;
      }
    }
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: `http://${host}`,
    get rules() {
      return proxy.rules;
    },
    set rules(value: FaultRule[]) {
      proxy.rules = value;
    },
    hits,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
