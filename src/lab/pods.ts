// Pods in the lab, made as Kubernetes makes them: a network namespace per pod, attached by the real CNI plugins
// (bridge + host-local from Debian's containernetworking-plugins) configured exactly as flannel's CNI plugin
// configures its delegate from the subnet.env our agent wrote (src/lab/cni.ts). Each pod gets eth0 with an address
// from the node's lease, the node gets cni0 (the lease's .1, the pods' gateway), and the pod's traffic to other nodes
// is forwarded by the node's kernel into vxtun0 (or, with host-gw, onto the underlay).
//
// Like a container runtime, we keep each pod's network configuration and ADD result (libcni keeps them in
// /var/lib/cni/results) so that CHECK and DEL get the same configuration ADD had, and DEL is idempotent.
// Pod namespaces are named `<node namespace>-p<j>` (vxt-lab-n1-p1): the lab records them, and crash cleanup
// (destroyLab, destroyStaleLabs, scripts/sweep.sh) finds them by the lab's vxt- prefix.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CniResult, flannelDelegateConfig, invokeCni, netnsPath, podAddress6Of, podAddressOf, readFlannelEnv } from './cni';
import { enableIPv6, type Lab, type LabNode } from './topology';

export const POD_IFNAME = 'eth0';

/** A pod attached to a node; plain data, so that `vxtun lab` can record it and `lab down` detach it later. */
export interface Pod {
  /** Short name inside the lab: 'n1-p1'. */
  name: string;
  netns: string;
  /** The node it runs on: its short name and namespace (where the plugins run). */
  node: string;
  nodeNetns: string;
  /** CNI_CONTAINERID: the pod's namespace name. */
  containerId: string;
  /**
   * The pod's address on eth0, without prefix (10.17.3.2), its prefix length and its gateway (cni0, the .1). An
   * IPv6-only pod (subnet.env without FLANNEL_SUBNET) has its IPv6 address here too, as well as in address6.
   */
  address: string;
  prefixLength: number;
  gateway?: string;
  /** Dual-stack and IPv6-only pods: the IPv6 address host-local gave eth0 (fd00:17:0:1::2), its prefix and gateway. */
  address6?: string;
  prefixLength6?: number;
  gateway6?: string;
  /** The MTU the bridge plugin gave eth0 (subnet.env's FLANNEL_MTU). */
  mtu: number;
}

export interface PodNetwork {
  /** The subnet.env the node's agent wrote (its --subnet-file). */
  subnetEnvFile: string;
  /**
   * The node's CNI state: host-local's allocations (instead of /var/lib/cni/networks) and each pod's saved config and
   * result. Inside the lab's work dir, so that allocations die with the lab.
   */
  stateDir: string;
  /** CNI_PATH; default /usr/lib/cni. */
  binDir?: string;
}

interface SavedAttachment {
  config: Record<string, unknown>;
  result: CniResult;
}

/** The CNI state directory of a node inside a lab's (or an overlay's) work dir. */
export function podStateDir(workDir: string, nodeName: string): string {
  return join(workDir, 'cni', nodeName);
}

/** host-local's allocation directory for the network (one file per allocated address, named by it). */
export function ipamAllocationDir(stateDir: string, networkName = 'cbr0'): string {
  return join(stateDir, 'networks', networkName);
}

function savedPath(stateDir: string, containerId: string): string {
  return join(stateDir, 'attachments', `${containerId}.json`);
}

/**
 * Makes pod `index` of `node`: its namespace (recorded by the lab first), then CNI ADD with flannel's delegate
 * configuration from the node's subnet.env. No CHECK: Debian's bridge plugin (containernetworking-plugins before
 * v1.3.0) fails CHECK on any route without a gateway, such as flannel's route to FLANNEL_NETWORK
 * (containernetworking/plugins#886, fixed by #887); checkPod runs it for plugins that have the fix. Throws (with the plugin's msg) when the plugin fails,
 * after undoing what it made.
 */
export async function attachPod(lab: Lab, node: LabNode, index: number, network: PodNetwork): Promise<Pod> {
  const env = await readFlannelEnv(network.subnetEnvFile);
  if (env === undefined) throw new Error(`${network.subnetEnvFile} does not exist: the agent of ${node.name} writes it once it holds a lease`);
  const config = flannelDelegateConfig(env, { ipamDataDir: join(network.stateDir, 'networks') });
  const name = `${node.name}-p${index}`;
  const netns = await lab.addNamespace(name);
  const containerId = netns;
  const common = { containerId, netnsPath: netnsPath(netns), ifName: POD_IFNAME, runIn: node.netns, binDir: network.binDir };
  try {
    // Before the plugin makes eth0: without DAD its IPv6 address is usable at once (not "tentative" for ~2 s).
    if (env.ipv6Subnet !== undefined) await enableIPv6(netns, false);
    const result = (await invokeCni({ ...common, command: 'ADD', config }))!;
    mkdirSync(join(network.stateDir, 'attachments'), { recursive: true });
    const file = savedPath(network.stateDir, containerId);
    writeFileSync(`${file}.tmp`, `${JSON.stringify({ config, result } satisfies SavedAttachment, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
    const ip6 = env.ipv6Subnet !== undefined ? podAddress6Of(result, POD_IFNAME, env.ipv6Subnet) : undefined;
    const ip = env.subnet !== undefined ? podAddressOf(result, POD_IFNAME, env.subnet) : ip6!;
    return {
      name, netns, node: node.name, nodeNetns: node.netns, containerId,
      address: ip.address, prefixLength: ip.prefixLength, gateway: ip.gateway, mtu: env.mtu,
      ...(ip6 !== undefined ? { address6: ip6.address, prefixLength6: ip6.prefixLength, gateway6: ip6.gateway } : {}),
    };
  } catch (error) {
    await detachPod({ netns, nodeNetns: node.netns, containerId }, network.stateDir).catch(() => undefined);
    await lab.removeNamespace(netns).catch(() => undefined);
    throw error;
  }
}

/**
 * CNI CHECK for an attached pod, with the configuration and result of its ADD. With Debian's bridge plugin (before
 * containernetworking/plugins v1.3.0) it fails on flannel's gateway-less route to FLANNEL_NETWORK: "Expected Route
 * {Dst:... GW:<nil>} not found in routing table" (plugins#886), although the route is there, via the gateway.
 */
export async function checkPod(pod: Pick<Pod, 'netns' | 'nodeNetns' | 'containerId'>, stateDir: string, binDir?: string): Promise<void> {
  const saved = readSaved(stateDir, pod.containerId);
  if (saved === undefined) throw new Error(`pod ${pod.netns} has no saved CNI attachment in ${stateDir}`);
  await invokeCni({
    command: 'CHECK', containerId: pod.containerId, netnsPath: netnsPath(pod.netns), ifName: POD_IFNAME, runIn: pod.nodeNetns, binDir,
    config: { ...saved.config, prevResult: saved.result },
  });
}

/**
 * CNI DEL with the configuration the pod was added with (the veth, the address allocation, and the bridge plugin's
 * masquerade rules when it made some, go), then forgets the attachment. Idempotent: a pod never attached, or already
 * detached, is nothing to do; the pod's namespace is the caller's to remove (Lab.removeNamespace, or with the lab).
 */
export async function detachPod(pod: Pick<Pod, 'netns' | 'nodeNetns' | 'containerId'>, stateDir: string, binDir?: string): Promise<void> {
  const saved = readSaved(stateDir, pod.containerId);
  if (saved === undefined) return;
  await invokeCni({
    command: 'DEL', containerId: pod.containerId, netnsPath: netnsPath(pod.netns), ifName: POD_IFNAME, runIn: pod.nodeNetns, binDir,
    config: { ...saved.config, prevResult: saved.result },
  });
  rmSync(savedPath(stateDir, pod.containerId), { force: true });
}

function readSaved(stateDir: string, containerId: string): SavedAttachment | undefined {
  try {
    return JSON.parse(readFileSync(savedPath(stateDir, containerId), 'utf8')) as SavedAttachment;
  } catch {
    return undefined;
  }
}
