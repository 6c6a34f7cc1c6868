import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { captureResolver, parseHosts, parseResolvConf } from './inplace-dns.js';

/** A DNS server on 127.0.0.1 answering A queries from a table; NXDOMAIN otherwise, NODATA for AAAA. */
function startDns(table: Record<string, string>): Promise<{ socket: Socket; port: number; queries: string[] }> {
  const socket = createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (msg, rinfo) => {
    const labels: string[] = [];
    let i = 12;
    while (msg[i]! > 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString());
      i += msg[i]! + 1;
    }
    const qtype = msg.readUInt16BE(i + 1);
    const question = msg.subarray(12, i + 5);
    const name = labels.join('.').toLowerCase();
    queries.push(`${qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : qtype} ${name}`);
    const ip = table[name];
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2);
    header.writeUInt16BE(ip === undefined ? 0x8183 : 0x8180, 2);
    header.writeUInt16BE(1, 4);
    const answers: Buffer[] = [];
    if (ip !== undefined && qtype === 1) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0);
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(4, 10);
      ip.split('.').forEach((b, k) => rr.writeUInt8(Number(b), 12 + k));
      answers.push(rr);
    }
    header.writeUInt16BE(answers.length, 6);
    socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address);
  });
  return new Promise((resolve) => socket.bind(0, '127.0.0.1', () => resolve({ socket, port: socket.address().port, queries })));
}

let tmp: TempDir;
let dns: Awaited<ReturnType<typeof startDns>>;
let tcp: Server;
before(async () => {
  tmp = await tempDir('inplace-dns');
  dns = await startDns({ 'registry.ns.svc.cluster.local': '127.0.0.1', 'ghcr.example': '127.0.0.3' });
  tcp = createServer((s) => s.end('hello'));
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
});
after(async () => {
  dns?.socket.close();
  await new Promise((r) => tcp?.close(r));
  await tmp?.cleanup();
});

describe('captureResolver', () => {
  test('parses resolv.conf and hosts', () => {
    assert.deepEqual(parseResolvConf('# c\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver bogus\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5 timeout:1\n'), {
      servers: ['10.96.0.10', 'fe80::1'],
      search: ['ns.svc.cluster.local', 'svc.cluster.local'],
      ndots: 5,
    });
    assert.deepEqual([...parseHosts('127.0.0.1 localhost\n::1 localhost ip6-localhost # x\n10.0.0.1 Reg.Local\nnot-an-ip x\n')], [
      ['localhost', ['127.0.0.1', '::1']],
      ['ip6-localhost', ['::1']],
      ['reg.local', ['10.0.0.1']],
    ]);
  });

  test('answers from the files as they were at capture time: hosts, search list, literals, failures', async () => {
    const resolvConf = join(tmp.path, 'resolv.conf');
    const hostsFile = join(tmp.path, 'hosts');
    writeFileSync(resolvConf, 'nameserver 127.0.0.1\nsearch ns.svc.cluster.local\noptions ndots:5\n');
    writeFileSync(hostsFile, '127.0.0.2 pinned.registry\n');
    const r = captureResolver({ resolvConf, hostsFile, servers: [`127.0.0.1:${dns.port}`], timeoutMs: 500, tries: 1 });
    // What an image unpacked over /etc would do: the capture must not care.
    writeFileSync(resolvConf, 'nameserver 192.0.2.1\n');
    writeFileSync(hostsFile, '');
    assert.deepEqual(await r.resolve('pinned.registry'), [{ address: '127.0.0.2', family: 4 }]);
    assert.deepEqual(await r.resolve('registry'), [{ address: '127.0.0.1', family: 4 }], 'short names go through the search list');
    assert.deepEqual(await r.resolve('ghcr.example.', 4), [{ address: '127.0.0.3', family: 4 }]);
    assert.deepEqual(await r.resolve('[::1]'), [{ address: '::1', family: 6 }]);
    await assert.rejects(r.resolve('nowhere.example'), (e: NodeJS.ErrnoException) => e.code === 'ENOTFOUND');
    assert.ok(dns.queries.includes('A registry.ns.svc.cluster.local'), dns.queries.join(', '));
  });

  test('works as a socket lookup (net.connect, with and without all)', async () => {
    const r = captureResolver({ resolvConf: '/nonexistent', hostsFile: '/nonexistent', servers: [`127.0.0.1:${dns.port}`], timeoutMs: 500, tries: 1 });
    const port = (tcp.address() as AddressInfo).port;
    for (const autoSelectFamily of [true, false]) {
      const text = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: 'registry.ns.svc.cluster.local', port, lookup: r.lookup, autoSelectFamily });
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
      assert.equal(text, 'hello', `autoSelectFamily=${autoSelectFamily}`);
    }
    const all = await new Promise((resolve) => r.lookup('localhost', { all: true }, (_e, a) => resolve(a)));
    assert.deepEqual(all, [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }], 'the default hosts file when none can be read');
  });
});
