import { createServer } from 'node:net';

/**
 * A port that was free a moment ago on 127.0.0.1. Another process may take it before the caller
 * binds, so callers that spawn a server retry on "address already in use".
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not read the bound port'))));
    });
  });
}
