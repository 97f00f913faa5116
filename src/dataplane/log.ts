// The data plane's logger: the part of the control plane's Logger (src/control/log.ts) it uses, so that the agent
// passes its own without the data plane importing the control layer.

export interface DataPlaneLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLog: DataPlaneLog = { info: () => {}, warn: () => {}, error: () => {} };
