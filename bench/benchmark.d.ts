// benny's type declarations import `Suite` and `Event` from benchmark.js, which ships no types. We never touch either
// directly (benny hands them around opaquely), so two opaque classes are enough for strict type checking.
declare module 'benchmark' {
  export class Suite {
    private readonly opaque: unknown;
  }
  export class Event {
    private readonly opaque: unknown;
  }
}
