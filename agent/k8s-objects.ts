/*
 * What the agent's writers of cilium.io objects share (the CiliumIdentity backend, identity-crd.ts, and
 * the CiliumEndpoint/CiliumNode publisher, crd-state.ts): one request to the API server with the
 * kubeconfig's credentials, its HTTP status kept for the callers' decisions (404, 409), and an informer
 * over one collection that survives the API server going away — on any error it relists after a second
 * and keeps its cache meanwhile, so the node goes on with the last state it knew (client-go's reflector
 * relists in the same case).
 */
import { ListWatch, Watch, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import fetch from "node-fetch";

export class K8sHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One request; the parsed JSON answer, or a K8sHttpError for a status of 300 and above. */
export async function k8sRequest(kc: KubeConfig, method: string, path: string, body?: unknown, contentType = "application/json"): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("no current cluster in the kubeconfig");
  const init = (await kc.applyToFetchOptions({})) as { headers?: Record<string, string> };
  const res = await fetch(`${cluster.server}${path}`, {
    ...(init as object),
    method,
    headers: { ...(init.headers ?? {}), ...(body !== undefined ? { "content-type": contentType } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  } as never);
  const text = await res.text();
  if (res.status >= 300) throw new K8sHttpError(res.status, `${method} ${path}: HTTP ${res.status}${text ? ` ${text.slice(0, 200)}` : ""}`);
  return text ? JSON.parse(text) : undefined;
}

export interface CollectionInformer<T extends KubernetesObject> {
  /** The cached objects. */
  list(): readonly T[];
  stop(): void;
}

/**
 * Lists and watches `path`; `onEvent` after every add, update or delete (a relist that no longer finds an
 * object reports it deleted). Resolves once the first list answered; rejects after `startTimeoutMs` with
 * `what` in the message.
 */
export async function watchCollection<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  opts: { onEvent: (verb: "add" | "update" | "delete", o: T) => void; log?: (msg: string) => void; startTimeoutMs?: number; what: string },
): Promise<CollectionInformer<T>> {
  let stopped = false;
  let inf!: ListWatch<T>;
  const listed = new Promise<void>((resolve, reject) => {
    inf = new ListWatch<T>(
      path,
      new Watch(kc),
      async () => {
        const l = await k8sRequest(kc, "GET", path);
        setImmediate(resolve);
        return l as never;
      },
      false,
    );
    for (const verb of ["add", "update", "delete"] as const) inf.on(verb, (o: T) => opts.onEvent(verb, o));
    let restart: NodeJS.Timeout | undefined;
    // An error reported by the informer, or a start that rejects (a watch request refused outright rejects
    // instead of reporting): one restart a second later, relisting.
    const failed = (err: unknown) => {
      if (stopped || restart) return;
      opts.log?.(`${opts.what} informer: ${(err as Error)?.message ?? String(err)}; restarting in 1 s (cache kept)`);
      restart = setTimeout(() => {
        restart = undefined;
        // ListWatch keeps its resourceVersion private; clearing it makes the restart relist.
        (inf as unknown as { resourceVersion: string }).resourceVersion = "";
        if (!stopped) inf.start().catch(failed);
      }, 1000);
      restart.unref();
    };
    inf.on("error", failed);
    inf.start().catch((e: unknown) => {
      reject(e);
      failed(e);
    });
  });
  const stop = () => {
    stopped = true;
    void inf.stop();
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no list of ${path} within ${Math.round((opts.startTimeoutMs ?? 30_000) / 1000)} s (is the ${opts.what} CRD installed?)`)), opts.startTimeoutMs ?? 30_000)));
  try {
    await Promise.race([listed, timeout]);
  } catch (e) {
    stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { list: () => inf.list(), stop };
}
