// A "pod" address in a node: something other than the TUN / VTEP address for overlay traffic to reach, the way
// a pod's address on a real node is not the flannel device's. Kept in the node's namespace (no pod namespace):
// delivery is local either way, which is all the overlay tests need.

import { formatIPv4, parseIPv4 } from '../wire/address';
import { CommandError } from './shell';
import type { Lab, LabNode } from './topology';

export const POD_DEVICE = 'pod0';

export interface PodAddress {
  node: LabNode;
  address: string;
  /** 'pod0' (a dummy device) or 'lo' when this kernel has no dummy driver. */
  device: string;
}

/**
 * Gives `node` the address (e.g. the lease's .1) as a /32 on a dummy device `pod0`, created on first use; on
 * kernels without the dummy driver the address goes on lo instead, which the kernel treats just the same (local).
 */
export async function addPodAddress(lab: Lab, node: LabNode, address: string): Promise<PodAddress> {
  const canonical = formatIPv4(parseIPv4(address));
  const device = await ensurePodDevice(lab, node);
  await lab.exec(node, 'ip', ['addr', 'add', `${canonical}/32`, 'dev', device]);
  return { node, address: canonical, device };
}

export async function removePodAddress(lab: Lab, pod: PodAddress): Promise<void> {
  await lab.exec(pod.node, 'ip', ['addr', 'del', `${pod.address}/32`, 'dev', pod.device]);
}

async function ensurePodDevice(lab: Lab, node: LabNode): Promise<string> {
  try {
    await lab.exec(node, 'ip', ['link', 'show', 'dev', POD_DEVICE]);
    return POD_DEVICE;
  } catch {
    // not made yet
  }
  try {
    await lab.exec(node, 'ip', ['link', 'add', POD_DEVICE, 'type', 'dummy']);
  } catch (error) {
    if (error instanceof CommandError && /unknown device type|not supported/i.test(error.stderr)) return 'lo';
    throw error;
  }
  await lab.exec(node, 'ip', ['link', 'set', POD_DEVICE, 'up']);
  return POD_DEVICE;
}
