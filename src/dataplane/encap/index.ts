// Encapsulations by name, from one explicit map (DESIGN.md style 9).
import type { Encapsulation, LocalVtep } from './encapsulation';
import { IpipEncapsulation } from './ipip';
import { VxlanEncapsulation } from './vxlan';

export type { Encapsulation, LocalVtep } from './encapsulation';

const encapsulations: Record<string, (local: LocalVtep) => Encapsulation> = {
  vxlan: (local) => new VxlanEncapsulation(local),
  ipip: () => new IpipEncapsulation(),
};

export function createEncapsulation(name: string, local: LocalVtep): Encapsulation {
  const make = encapsulations[name];
  if (make === undefined) {
    throw new Error(`unknown backend type "${name}" for the data plane (expected ${Object.keys(encapsulations).join(' or ')})`);
  }
  return make(local);
}
