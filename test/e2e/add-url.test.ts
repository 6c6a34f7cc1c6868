/**
 * ADD <url> against a local HTTP server: name from the URL path, mode 0600, mtime from
 * Last-Modified, never unpacked, --checksum verified.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { buildToLayout, shape, unpackedTree } from './support.js';

const BODY = 'downloaded content\n';
const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT';
// A gzip stream that is not a tar: ADD must keep remote files as they are anyway.
const GZ = gzipSync(Buffer.from('not unpacked'));

describe('ADD <url>', () => {
  let server: Server;
  let base: string;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/files/data.txt') {
        res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': LAST_MODIFIED });
        res.end(BODY);
      } else if (req.url === '/moved') {
        res.writeHead(302, { location: '/files/data.txt' });
        res.end();
      } else if (req.url === '/files/pkg.tar.gz') {
        res.writeHead(200);
        res.end(GZ);
      } else {
        res.writeHead(404);
        res.end('not found');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const sha = `sha256:${createHash('sha256').update(BODY).digest('hex')}`;

  it('downloads into a directory with the URL file name, mode 0600 and Last-Modified as mtime', async () => {
    const b = await buildToLayout(`FROM scratch\nADD ${base}/files/data.txt /dl/\nADD --checksum=${sha} ${base}/moved /renamed\nADD ${base}/files/pkg.tar.gz /pkg/\n`, {});
    try {
      const tree = await unpackedTree(b.layout);
      assert.equal(tree['dl/data.txt']?.content, BODY);
      assert.equal(tree['dl/data.txt']!.mode, 0o600);
      assert.equal(tree['dl/data.txt']!.mtime, Date.parse(LAST_MODIFIED) / 1000);
      assert.equal(shape(tree)['renamed'], `file:${BODY}`);
      assert.equal(tree['pkg/pkg.tar.gz']?.type, 'file', 'remote archives are not unpacked');
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('fails on a checksum mismatch', async () => {
    const wrong = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(buildToLayout(`FROM scratch\nADD --checksum=${wrong} ${base}/files/data.txt /x\n`, {}), (err: Error & { code?: string }) => {
      return err.code === 'DIGEST_MISMATCH' && err.message.startsWith('Dockerfile:2: ') && err.message.includes(sha);
    });
  });

  it('fails on HTTP errors, and COPY refuses URLs', async () => {
    await assert.rejects(buildToLayout(`FROM scratch\nADD ${base}/nope /x\n`, {}), /Dockerfile:2: downloading .*\/nope: invalid response status 404/);
    await assert.rejects(buildToLayout(`FROM scratch\nCOPY ${base}/files/data.txt /x\n`, {}), /source can't be a URL for COPY/);
  });
});
