// IPv6 pods from the real CNI plugins (bridge + host-local), configured as flannel's CNI plugin configures its delegate
// for dual-stack and IPv6-only (flannel-io/cni-plugin getDelegateIPAM: one range set per family, one route per
// network). The subnet.env is written here as flanneld writes it, so this runs without an agent: it proves the lab's
// half of issue 12's pods (addresses, gateways, routes, no DAD stall) before the IPv6 data plane lands.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ping } from '../../src/lab/ping';
import { attachPod, detachPod, type Pod, podStateDir } from '../../src/lab/pods';
import { createLab, type Lab } from '../../src/lab/topology';

const test = suite('IPv6 pods (CNI bridge + host-local, flannel delegate)');

let lab: Lab | undefined;
let dir: string | undefined;

test.after(async () => {
  await lab?.destroy();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

async function routes6(pod: Pod): Promise<string> {
  return (await lab!.exec(pod, 'ip', ['-6', 'route', 'show'])).stdout;
}

test('dual-stack subnet.env: each pod gets an IPv4 and an IPv6 address, gateways on cni0, both cluster routes; pods ping over both', async () => {
  lab = await createLab({ name: `vxt-pd6${process.pid}`, nodes: 1, underlay6: true });
  dir = mkdtempSync(join(tmpdir(), 'vxt-pd6-'));
  const n1 = lab.node(1);
  const envFile = join(dir, 'dual.env');
  writeFileSync(envFile, [
    'FLANNEL_NETWORK=10.17.0.0/16', 'FLANNEL_SUBNET=10.17.1.1/24',
    'FLANNEL_IPV6_NETWORK=fd00:17::/56', 'FLANNEL_IPV6_SUBNET=fd00:17:0:1::1/64',
    'FLANNEL_MTU=1430', 'FLANNEL_IPMASQ=true', '',
  ].join('\n'));
  const network = { subnetEnvFile: envFile, stateDir: podStateDir(dir, 'n1') };
  const p1 = await attachPod(lab, n1, 1, network);
  const p2 = await attachPod(lab, n1, 2, network);

  assert.match(p1.address, /^10\.17\.1\.\d+$/);
  assert.match(p1.address6 ?? '', /^fd00:17:0:1::[0-9a-f]+$/);
  assert.is(p1.prefixLength6, 64);
  assert.is(p1.gateway6, 'fd00:17:0:1::1', 'host-local gives the first address to the gateway (cni0)');
  assert.is.not(p1.address6, p2.address6);
  const r = await routes6(p1);
  assert.match(r, /fd00:17::\/56 via fd00:17:0:1::1/, 'the IPv6 cluster route flannel adds');
  assert.match(r, /default via fd00:17:0:1::1/, 'kube-flannel delegates isDefaultGateway');
  const addr = (await lab.exec(p1, 'ip', ['-6', 'addr', 'show', 'dev', 'eth0'])).stdout;
  assert.not.match(addr, /tentative/, 'no DAD: the address is usable at once');

  assert.is((await ping(lab, p1, p2.address6!, { count: 2, intervalSeconds: 0.2 })).received, 2, 'pod to pod over IPv6');
  assert.is((await ping(lab, p1, p1.gateway6!, { count: 2, intervalSeconds: 0.2 })).received, 2, 'pod to its IPv6 gateway');
  assert.is((await ping(lab, p1, p2.address, { count: 2, intervalSeconds: 0.2 })).received, 2, 'and over IPv4');
  await detachPod(p2, network.stateDir);
  const after = await ping(lab, p1, p2.address6!, { count: 1, replyTimeoutSeconds: 1 }).catch(() => ({ received: 0 }));
  assert.is(after.received, 0, 'the detached pod is gone');
});

test('IPv6-only subnet.env (no FLANNEL_SUBNET): the pod has only IPv6, its address is address6 too', async () => {
  const n1 = lab!.node(1);
  const envFile = join(dir!, 'v6only.env');
  writeFileSync(envFile, 'FLANNEL_IPV6_NETWORK=fd00:18::/56\nFLANNEL_IPV6_SUBNET=fd00:18:0:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n');
  // Another subnet.env on the same node: the bridge plugin adds this network's gateway to the same cni0.
  const pod = await attachPod(lab!, n1, 3, { subnetEnvFile: envFile, stateDir: podStateDir(dir!, 'n1-v6only') });
  assert.match(pod.address6 ?? '', /^fd00:18:0:1::/);
  assert.is(pod.address, pod.address6);
  const v4 = (await lab!.exec(pod, 'ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).stdout;
  assert.not.match(v4, /inet /, 'no IPv4 address');
});

test.run();
