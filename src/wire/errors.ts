// The one error the wire layer throws, from `parseX` only (the control path and tests). The hot path uses `checkX`,
// which returns the same problem string instead of throwing, so that a drop is a counter increment.

export class WireError extends Error {
  /** Which header failed: 'ipv4', 'udp', 'vxlan', ... */
  readonly layer: string;
  /** Short kebab-case reason, identical to what `checkX` returns: 'truncated', 'bad-checksum', ... */
  readonly problem: string;

  constructor(layer: string, problem: string) {
    super(`${layer}: ${problem}`);
    this.name = 'WireError';
    this.layer = layer;
    this.problem = problem;
  }
}
