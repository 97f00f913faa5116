// The agent's Prometheus endpoint, scraped inside the node's namespace after real traffic.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { createLab } from '../../src/lab/topology';
import { formatIPv4 } from '../../src/wire/address';

const Metrics = suite('metrics');

Metrics('counters, drops by reason and pool use in Prometheus text format', async () => {
  const lab = await createLab({ name: `vxt-me${process.pid}`, nodes: 2 });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, { backend: 'ipip' });
    const [n1, n2] = lab.nodes;
    await overlay.startAgent(n1, ['--metrics', '127.0.0.1:9469']);
    await overlay.startAgent(n2);
    await overlay.waitForRoutes(n1, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    assert.is((await ping(lab, n1, target, { count: 3, intervalSeconds: 0.1 })).received, 3);
    await ping(lab, n1, '10.17.99.1', { count: 1 });
    const scrape = "fetch('http://127.0.0.1:9469/metrics').then(r => r.text()).then(t => process.stdout.write(t))";
    const { stdout } = await lab.exec(n1, process.execPath, ['-e', scrape]);
    assert.match(stdout, /# TYPE vxtun_packets_total counter/);
    const sample = (name: string): number => Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(stdout)?.[1]);
    assert.ok(sample('vxtun_packets_total{door="underlay_out"}') >= 3, stdout);
    assert.ok(sample('vxtun_packets_total{door="tun_out"}') >= 3, stdout);
    assert.is(sample('vxtun_drops_total{stage="route",reason="no-match"}'), 1);
    assert.is(sample('vxtun_routes'), 1);
    assert.is(sample('vxtun_store_connected'), 1);
  } finally {
    await overlay?.close();
    await lab.destroy();
  }
});

Metrics.run();
