import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { consoleLogger, formatLogLine, nullLogger } from '../../src/control/log';

const test = suite('control: log');

test('one line per event: level, quoted msg, key=value with values quoted only when needed', () => {
  assert.is(
    formatLogLine('info', 'lease acquired', { subnet: '10.17.1.0/24', publicIp: '192.0.2.1', ttl: 86400, renewed: true }),
    'level=info msg="lease acquired" subnet=10.17.1.0/24 publicIp=192.0.2.1 ttl=86400 renewed=true',
  );
  assert.is(
    formatLogLine('warn', 'renew failed', { error: new Error('store "etcd" down'), extra: { a: 1 }, gone: undefined }),
    'level=warn msg="renew failed" error="store \\"etcd\\" down" extra={"a":1}',
  );
  assert.is(formatLogLine('error', 'x'), 'level=error msg="x"');
  // The bgp agent's "lease acquired": no VTEP MAC, no node name.
  assert.is(
    formatLogLine('info', 'lease acquired', { subnet: '10.17.1.0/24', node: undefined, publicIp: '192.0.2.1', vtepMac: undefined }),
    'level=info msg="lease acquired" subnet=10.17.1.0/24 publicIp=192.0.2.1',
  );
});

test('consoleLogger drops events below its level and ends each line with a newline', () => {
  const lines: string[] = [];
  const log = consoleLogger('warn', (line) => lines.push(line));
  log.debug('d');
  log.info('i');
  log.warn('w', { k: 'v w' });
  log.error('e');
  assert.equal(lines, ['level=warn msg="w" k="v w"\n', 'level=error msg="e"\n']);
  nullLogger.error('nothing happens');
});

test.run();
