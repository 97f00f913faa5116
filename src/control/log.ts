// The control plane's logger seam: one call per event, a message plus structured fields, so that the agent
// can print "level=info msg=... key=value" lines and tests can collect events without parsing text.

export type LogFields = Record<string, unknown>;
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const noop = (): void => {};

export const nullLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Bare words stay bare; anything a shell or a log parser could split is quoted as a JSON string. */
function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message);
  if (typeof value === 'string') return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return JSON.stringify(String(value));
  }
}

/** Formats one event as `level=info msg="..." key=value ...` (no trailing newline); undefined fields are left out. */
export function formatLogLine(level: LogLevel, msg: string, fields?: LogFields): string {
  let line = `level=${level} msg=${JSON.stringify(msg)}`;
  if (fields) {
    // A field that does not apply (no VTEP MAC on bgp, no port on ipip) is left out, not printed as `undefined`.
    for (const key of Object.keys(fields)) if (fields[key] !== undefined) line += ` ${key}=${formatValue(fields[key])}`;
  }
  return line;
}

/** A logger printing one line per event at or above `level`; `write` defaults to stderr. */
export function consoleLogger(level: LogLevel = 'info', write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const min = LEVEL_RANK[level];
  const at = (lvl: LogLevel) =>
    LEVEL_RANK[lvl] < min ? noop : (msg: string, fields?: LogFields) => write(formatLogLine(lvl, msg, fields) + '\n');
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
