/**
 * Which HTTP proxy a request goes through, with Go's `ProxyFromEnvironment` rules (what Kaniko
 * users configure): HTTPS_PROXY for https URLs, HTTP_PROXY for http, upper case before lower case;
 * NO_PROXY is a comma list of hosts/domains (a domain covers its subdomains, a leading "." only
 * the subdomains), IPs, optional ports, or "*"; localhost and loopback IPs are never proxied.
 */
export function proxyForUrl(url: URL, env: NodeJS.ProcessEnv): string | undefined {
  const proxy = url.protocol === 'https:' ? (env.HTTPS_PROXY ?? env.https_proxy) : url.protocol === 'http:' ? (env.HTTP_PROXY ?? env.http_proxy) : undefined;
  if (!proxy) return undefined;
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1') return undefined;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const noProxy = env.NO_PROXY ?? env.no_proxy ?? '';
  for (const raw of noProxy.split(',')) {
    const item = raw.trim().toLowerCase();
    if (!item) continue;
    if (item === '*') return undefined;
    const { host: entry, port: entryPort } = splitHostPort(item);
    if (entryPort !== undefined && entryPort !== port) continue;
    if (entry.startsWith('.')) {
      if (host.endsWith(entry)) return undefined;
    } else if (host === entry || host.endsWith(`.${entry}`)) {
      return undefined;
    }
  }
  // Go accepts "proxy:3128" without a scheme and means http.
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(proxy) ? proxy : `http://${proxy}`;
}

function splitHostPort(entry: string): { host: string; port?: string } {
  if (entry.startsWith('[')) {
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    return m ? { host: m[1]!, ...(m[2] ? { port: m[2] } : {}) } : { host: entry };
  }
  const parts = entry.split(':');
  // One colon is host:port; more is a bare IPv6 address.
  if (parts.length === 2 && /^\d+$/.test(parts[1]!)) return { host: parts[0]!, port: parts[1]! };
  return { host: entry };
}
