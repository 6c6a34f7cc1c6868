import { createRequire } from 'node:module';
import type { Dispatcher, ProxyAgent as ProxyAgentType } from 'undici';

/**
 * undici for the one job node:http does not do for us: requests through an HTTP(S) proxy
 * (ProxyAgent's CONNECT tunnels). Loaded on first use only: the package loads every feature it
 * has (fetch, WebSocket, caches, mocks) and costs ~100 ms of CPU before its first request, more
 * than a small copy spends on the network.
 */
const require = createRequire(import.meta.url);

type Undici = typeof import('undici');

export function newProxyAgent(opts: ProxyAgentType.Options): Dispatcher {
  const { ProxyAgent } = require('undici') as Undici;
  return new ProxyAgent(opts);
}

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path'>;

export function requestVia(dispatcher: Dispatcher, url: URL, opts: RequestOptions): Promise<Dispatcher.ResponseData> {
  const { request } = require('undici') as Undici;
  return request(url, { ...opts, dispatcher });
}
