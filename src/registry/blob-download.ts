import { Readable, pipeline } from 'node:stream';
import { GantryError } from '../util/errors.js';
import { VerifyingStream } from '../util/digest.js';
import { backoffDelay } from '../util/retry.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryClient } from './client.js';
import { pullScope, pushScope } from './auth/scope.js';
import type { Repository } from './reference.js';
import { headerValue, isTransientNetworkError, pause, type HttpResponse } from './transport.js';

/**
 * Opens a blob for reading. The stream is verified (digest and size) and survives dropped
 * connections: it re-requests the rest with `Range: bytes=<received>-` up to `retries` times, so a
 * reset 900 MB into a 1 GB layer costs 100 MB, not 1 GB.
 */
export async function openBlob(client: RegistryClient, repo: Repository, desc: Descriptor, opts: { signal?: AbortSignal; push?: boolean } = {}): Promise<Readable> {
  const what = `pulling blob ${desc.digest} from ${repo.registry}/${repo.repository}`;
  const scopes = [opts.push ? pushScope(repo.repository) : pullScope(repo.repository)];
  const fetchFrom = (offset: number) =>
    client.request({
      registry: repo.registry,
      method: 'GET',
      path: `/v2/${repo.repository}/blobs/${desc.digest}`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      scopes,
      expect: offset > 0 ? [200, 206] : [200],
      ctx: { what, kind: 'blob' },
      signal: opts.signal,
    });
  const first = await fetchFrom(0);
  const retries = client.options.retries;
  const backoff = { attempts: retries + 1, ...client.options.backoff };

  async function* chunks(): AsyncGenerator<Buffer> {
    let res: HttpResponse = first;
    let received = 0;
    let skip = 0;
    let resumes = 0;
    try {
      for (;;) {
        try {
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            let c = chunk;
            if (skip > 0) {
              // The server ignored Range and restarted from byte 0: drop what we already passed on.
              const drop = Math.min(skip, c.length);
              skip -= drop;
              c = c.subarray(drop);
              if (c.length === 0) continue;
            }
            received += c.length;
            yield c;
          }
          if (desc.size >= 0 && received < desc.size) {
            throw new GantryError('REGISTRY_UNREACHABLE', `${what}: connection ended after ${received} of ${desc.size} bytes`, { errno: 'UND_ERR_SOCKET' });
          }
          return;
        } catch (err) {
          if (opts.signal?.aborted || resumes >= retries || !isTransientNetworkError(err)) {
            if (err instanceof GantryError) throw err;
            throw new GantryError('REGISTRY_UNREACHABLE', `${what}: ${(err as Error).message} after ${received} bytes`, {}, { cause: err });
          }
          resumes++;
          client.options.logger.log('debug', `${what}: connection lost after ${received} bytes (${(err as Error).message}); resuming`);
          res.body.destroy();
          await pause(backoffDelay(backoff, resumes), opts.signal);
          res = await fetchFrom(received);
          skip = 0;
          if (res.status === 200) skip = received;
          else {
            const start = /^bytes (\d+)-/.exec(headerValue(res.headers, 'content-range') ?? '');
            if (start && Number(start[1]) !== received) {
              res.body.destroy();
              throw new GantryError('REGISTRY_ERROR', `${what}: asked to resume at byte ${received}, the registry answered from byte ${start[1]}`);
            }
          }
        }
      }
    } finally {
      res.body.destroy();
    }
  }

  const verifier = new VerifyingStream({ digest: desc.digest, size: desc.size }, `blob ${desc.digest} from ${repo.registry}/${repo.repository}`);
  pipeline(Readable.from(chunks(), { objectMode: false }), verifier, () => {
    // errors reach the consumer through `verifier`
  });
  return verifier;
}
