import { Resolver } from 'node:dns';
import { readFileSync } from 'node:fs';
import { isIP, type LookupFunction } from 'node:net';
import { GantryError } from '../util/errors.js';

/**
 * Name resolution that survives the base image replacing /etc (the in-place mode). getaddrinfo
 * (dns.lookup, the default for every socket) follows the image's nsswitch.conf and can dlopen the
 * image's NSS modules into the builder (spike.md Q3, "NSS hazard"). This captures resolv.conf and
 * /etc/hosts once, before the first unpack, and answers from them with c-ares (dns.Resolver),
 * which never touches NSS. Pass `lookup` to every socket the builder opens afterwards (undici:
 * `new Agent({ connect: { lookup } })`; tls/net: the `lookup` option).
 *
 * In a pod, resolv.conf and hosts are mount points, so unpacking never replaces them anyway; the
 * capture matters for runtimes that copy them into the container's root filesystem instead.
 */

export interface CaptureOptions {
  /** Default /etc/resolv.conf. */
  resolvConf?: string;
  /** Default /etc/hosts. */
  hostsFile?: string;
  /** DNS servers (`ip` or `ip:port`), instead of resolv.conf's nameservers (tests). */
  servers?: string[];
  /** Per-query timeout in ms (default 5000) and attempts per server (default 2), as resolv.conf's defaults. */
  timeoutMs?: number;
  tries?: number;
}

export interface CapturedResolver {
  servers: string[];
  search: string[];
  ndots: number;
  /** Host names from the hosts file (lower case) -> addresses, file order. */
  hosts: Map<string, string[]>;
  /** A drop-in for dns.lookup in socket options: no getaddrinfo, no NSS. */
  lookup: LookupFunction;
  resolve(hostname: string, family?: 0 | 4 | 6): Promise<Array<{ address: string; family: 4 | 6 }>>;
}

export function parseResolvConf(text: string): { servers: string[]; search: string[]; ndots: number } {
  const servers: string[] = [];
  let search: string[] = [];
  let ndots = 1;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver' && rest[0] && isIP(rest[0].replace(/%.*$/, ''))) servers.push(rest[0].replace(/%.*$/, ''));
    else if (key === 'search' || key === 'domain') search = rest.filter(Boolean);
    else if (key === 'options') {
      for (const o of rest) {
        const m = /^ndots:(\d+)$/.exec(o);
        if (m) ndots = Math.min(15, Number(m[1]));
      }
    }
  }
  return { servers, search, ndots };
}

export function parseHosts(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const [addr, ...names] = raw.replace(/#.*$/, '').trim().split(/\s+/);
    if (!addr || !isIP(addr)) continue;
    for (const n of names) {
      const key = n.toLowerCase();
      const list = out.get(key) ?? [];
      if (!list.includes(addr)) list.push(addr);
      out.set(key, list);
    }
  }
  return out;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** Reads resolv.conf and hosts now; the result never reads them again. */
export function captureResolver(opts: CaptureOptions = {}): CapturedResolver {
  const conf = parseResolvConf(readOr(opts.resolvConf ?? '/etc/resolv.conf', ''));
  const hosts = parseHosts(readOr(opts.hostsFile ?? '/etc/hosts', '127.0.0.1 localhost\n::1 localhost\n'));
  // glibc's default when resolv.conf names no server.
  const servers = opts.servers ?? (conf.servers.length > 0 ? conf.servers : ['127.0.0.1']);
  const resolver = new Resolver({ timeout: opts.timeoutMs ?? 5000, tries: opts.tries ?? 2 });
  resolver.setServers(servers);

  const query = (name: string, family: 4 | 6): Promise<string[]> =>
    new Promise((resolve) => {
      const cb = (err: NodeJS.ErrnoException | null, addrs: string[]) => resolve(err ? [] : addrs);
      if (family === 4) resolver.resolve4(name, cb);
      else resolver.resolve6(name, cb);
    });

  const resolve = async (hostname: string, family: 0 | 4 | 6 = 0): Promise<Array<{ address: string; family: 4 | 6 }>> => {
    const name = hostname.replace(/\.$/, '').toLowerCase();
    const literal = isIP(name.replace(/^\[|\]$/g, ''));
    if (literal) return [{ address: name.replace(/^\[|\]$/g, ''), family: literal as 4 | 6 }];
    const want = (f: 4 | 6) => family === 0 || family === f;
    const fromHosts = hosts.get(name)?.map((address) => ({ address, family: isIP(address) as 4 | 6 })).filter((a) => want(a.family));
    if (fromHosts && fromHosts.length > 0) return fromHosts;
    // resolv.conf semantics: names with fewer than ndots dots try the search list first.
    const absolute = hostname.endsWith('.');
    const dots = name.split('.').length - 1;
    const candidates = absolute ? [name] : dots >= conf.ndots ? [name, ...conf.search.map((d) => `${name}.${d}`)] : [...conf.search.map((d) => `${name}.${d}`), name];
    for (const candidate of candidates) {
      const [v4, v6] = await Promise.all([want(4) ? query(candidate, 4) : [], want(6) ? query(candidate, 6) : []]);
      const found = [...v4.map((address) => ({ address, family: 4 as const })), ...v6.map((address) => ({ address, family: 6 as const }))];
      if (found.length > 0) return found;
    }
    throw Object.assign(new GantryError('REGISTRY_UNREACHABLE', `cannot resolve host name ${hostname} (DNS servers ${servers.join(', ')})`, {
      hint: 'check the DNS settings of the container (resolv.conf as it was when gantry started)',
    }), { errno: -3008, code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname });
  };

  const lookup = ((hostname: string, options: unknown, callback?: unknown) => {
    const cb = (typeof options === 'function' ? options : callback) as (err: Error | null, address: unknown, family?: number) => void;
    const o = (typeof options === 'object' && options !== null ? options : typeof options === 'number' ? { family: options } : {}) as { family?: number | string; all?: boolean };
    const fam = o.family === 4 || o.family === 'IPv4' ? 4 : o.family === 6 || o.family === 'IPv6' ? 6 : 0;
    resolve(hostname, fam).then(
      (addrs) => (o.all ? cb(null, addrs) : cb(null, addrs[0]!.address, addrs[0]!.family)),
      (err: Error) => cb(err, o.all ? [] : undefined),
    );
  }) as LookupFunction;

  return { servers, search: conf.search, ndots: conf.ndots, hosts, lookup, resolve };
}
