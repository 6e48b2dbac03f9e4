/*
 * The relay's connections to the nodes' Observer APIs, one gRPC channel a peer (Hubble Relay's peer pool,
 * cilium/cilium pkg/hubble/relay/pool): a peer that cannot be reached is reported, never fatal, and is
 * dialled again with exponential backoff — 1 s doubling up to the retry timeout (Hubble Relay's
 * --retry-timeout, 30 s) — until it answers; then the backoff starts over. A peer is named after the node
 * its GetNodes reports once it answers, by its address until then.
 *
 * Targets are what grpc-js dials: `unix:///absolute/path` (an agent's hubble.sock) or `host:port`.
 */
import * as grpc from "@grpc/grpc-js";
import { loadObserverPackage } from "./observer-grpc.ts";

export interface PeerOptions {
  /** The longest wait between two dials of a peer that is down (ms). */
  retryTimeoutMs: number;
  /** How long a status call to a peer may take (ms; Hubble Relay's --dial-timeout, 5 s). */
  dialTimeoutMs: number;
}

/** A server status as proto-loader reads observer.ServerStatusResponse (64-bit counters as strings). */
export interface PeerStatus {
  num_flows?: string;
  max_flows?: string;
  seen_flows?: string;
  uptime_ns?: string;
  flows_rate?: number;
  version?: string;
}

export type ObserverClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

export class RelayPeer {
  /** The node's name (from its GetNodes), or the address until it has answered. */
  name: string;
  readonly client: ObserverClient;
  /** undefined: never reached yet; true: connected; false: the last dial or call failed. */
  private up: boolean | undefined;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly target: string,
    private readonly opts: PeerOptions,
  ) {
    this.name = target;
    this.backoffMs = this.firstBackoff();
    const pkg = loadObserverPackage();
    this.client = new pkg.observer.Observer(target, grpc.credentials.createInsecure(), {
      // grpc-js keeps its own reconnect backoff under ours: the same bounds, so neither waits longer.
      "grpc.initial_reconnect_backoff_ms": this.firstBackoff(),
      "grpc.max_reconnect_backoff_ms": opts.retryTimeoutMs,
    }) as unknown as ObserverClient;
    this.watch();
  }

  /** Hubble's isAvailable: not known to be down (a peer not dialled yet is tried). */
  get available(): boolean {
    return this.up !== false && !this.closed;
  }

  /** Whether the last dial succeeded and the connection is open. */
  get connected(): boolean {
    return this.up === true;
  }

  /** The peer's ServerStatus, or the error it failed with (which marks the peer down). */
  async status(): Promise<PeerStatus | grpc.ServiceError> {
    return new Promise((resolve) =>
      this.client.ServerStatus!({}, { deadline: Date.now() + this.opts.dialTimeoutMs }, (e: grpc.ServiceError | null, s: PeerStatus) => {
        if (e) this.failed(e);
        resolve(e ?? s);
      }),
    );
  }

  /** A call to the peer failed: when it could not be reached, it is down until a dial succeeds. */
  failed(e: grpc.ServiceError): void {
    if (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.DEADLINE_EXCEEDED) return;
    this.up = false;
    this.redial();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.client.close();
  }

  private firstBackoff(): number {
    return Math.min(1000, this.opts.retryTimeoutMs);
  }

  /** Follows the channel's state for as long as the peer is open. */
  private watch(): void {
    if (this.closed) return;
    const channel = this.client.getChannel();
    const state = channel.getConnectivityState(false);
    this.onState(state);
    channel.watchConnectivityState(state, Infinity, () => this.watch());
  }

  private onState(state: grpc.connectivityState): void {
    const S = grpc.connectivityState;
    if (state === S.READY) {
      this.up = true;
      this.backoffMs = this.firstBackoff();
      clearTimeout(this.timer);
      this.timer = undefined;
      this.learnName();
    } else if (state === S.TRANSIENT_FAILURE) {
      this.up = false;
      this.redial();
    } else if (state === S.IDLE) {
      // Never dialled (connect now), or the connection closed (the peer went away: dial again after backoff).
      if (this.up === undefined) this.client.getChannel().getConnectivityState(true);
      else {
        this.up = false;
        this.redial();
      }
    }
  }

  private redial(): void {
    if (this.closed || this.timer) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.retryTimeoutMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) this.client.getChannel().getConnectivityState(true);
    }, wait);
    this.timer.unref();
  }

  private learnName(): void {
    this.client.GetNodes!({}, { deadline: Date.now() + this.opts.dialTimeoutMs }, (e: grpc.ServiceError | null, r: { nodes?: { name?: string }[] }) => {
      // A node's observer lists itself; a relay behind a relay lists many and keeps its address as name.
      if (!e && r.nodes?.length === 1 && r.nodes[0]!.name) this.name = r.nodes[0]!.name;
    });
  }
}
