// A request to the agent's local API (status socket, metrics) that cannot be served: the HTTP status to answer with
// and a one-line reason the client prints. Anything else a handler throws is answered 500 with its message.

export class ApiError extends Error {
  /** `status`: an HTTP status code (400 bad request, 405, 409 cannot in this mode, 503 busy). */
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The HTTP status and message to answer with for whatever a handler threw. */
export function describeFailure(err: unknown): { status: number; message: string } {
  if (err instanceof ApiError) return { status: err.status, message: err.message };
  return { status: 500, message: err instanceof Error ? err.message : String(err) };
}
