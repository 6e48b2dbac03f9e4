// The JSON shapes of the manifest fields that the loader's consumers read (the simulator's cluster builder,
// the agent's desired state): which must be objects, lists, or maps of scalars. The loader checks them once,
// so every consumer can read `spec.containers[i].ports` without guarding each level, and a manifest with
// `spec: -1` or `containers: {}` is refused with the field's path and line instead of failing deep inside
// as a TypeError. Shapes follow the Kubernetes API types (k8s.io/api core/v1 PodSpec, ServiceSpec,
// discovery/v1 EndpointSlice; apps/v1 PodTemplateSpec) and ciliate's own kinds (docs/scenarios.md).

type Shape = "object" | "list" | "labels";

const CONTAINER_FIELDS: [string, Shape][] = [
  ["containers", "list"],
  ["containers[]", "object"],
  ["containers[].ports", "list"],
  ["containers[].ports[]", "object"],
  ["initContainers", "list"],
  ["initContainers[]", "object"],
  ["initContainers[].ports", "list"],
  ["initContainers[].ports[]", "object"],
];

/** Field paths ("[]" = every element) and the shape each must have when present (null counts as absent). */
const SHAPES: [string, Shape][] = [
  ["metadata", "object"],
  ["metadata.labels", "labels"],
  ["metadata.annotations", "labels"],
  ["spec", "object"],
  ["status", "object"],
  ...CONTAINER_FIELDS.map(([p, s]): [string, Shape] => [`spec.${p}`, s]),
  ["spec.template", "object"],
  ["spec.template.metadata", "object"],
  ["spec.template.metadata.labels", "labels"],
  ["spec.template.spec", "object"],
  ...CONTAINER_FIELDS.map(([p, s]): [string, Shape] => [`spec.template.spec.${p}`, s]),
  ["spec.selector", "object"],
  ["spec.ports", "list"],
  ["spec.ports[]", "object"],
  ["spec.sessionAffinityConfig", "object"],
  ["spec.sessionAffinityConfig.clientIP", "object"],
  ["spec.flows", "list"],
  ["spec.flows[]", "object"],
  ["spec.maglev", "object"],
  ["spec.ctTimeouts", "object"],
  ["status.podIPs", "list"],
  ["status.podIPs[]", "object"],
  ["status.addresses", "list"],
  ["status.addresses[]", "object"],
  ["status.loadBalancer", "object"],
  ["status.loadBalancer.ingress", "list"],
  ["status.loadBalancer.ingress[]", "object"],
  ["endpoints", "list"],
  ["endpoints[]", "object"],
  ["endpoints[].addresses", "list"],
  ["endpoints[].conditions", "object"],
];

function kindOf(v: unknown): string {
  return Array.isArray(v) ? "a list" : v === null ? "null" : typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function fits(v: unknown, s: Shape): boolean {
  const isObject = typeof v === "object" && v !== null && !Array.isArray(v);
  if (s === "list") return Array.isArray(v);
  if (s === "object") return isObject;
  return isObject && Object.values(v as object).every((x) => x === null || ["string", "number", "boolean"].includes(typeof x));
}

const EXPECTED: Record<Shape, string> = { object: "an object", list: "a list", labels: "a map of strings" };

export interface ShapeProblem {
  path: (string | number)[];
  detail: string;
}

/** The first field of `raw` whose shape is wrong, or undefined. */
export function shapeProblem(raw: Record<string, unknown>): ShapeProblem | undefined {
  for (const [pattern, shape] of SHAPES) {
    // Expand the pattern over the values present: a missing or null level ends that branch.
    let nodes: { v: unknown; path: (string | number)[] }[] = [{ v: raw, path: [] }];
    const steps = pattern.split(".");
    for (let i = 0; i < steps.length && nodes.length; i++) {
      const step = steps[i]!;
      const key = step.endsWith("[]") ? step.slice(0, -2) : step;
      const next: typeof nodes = [];
      for (const n of nodes) {
        const v = (n.v as Record<string, unknown>)[key];
        if (v === undefined || v === null) continue;
        if (step.endsWith("[]")) {
          if (!Array.isArray(v)) continue; // reported by the pattern for the list itself
          v.forEach((x, j) => {
            if (x !== undefined && x !== null) next.push({ v: x, path: [...n.path, key, j] });
          });
        } else next.push({ v, path: [...n.path, key] });
      }
      // Only objects have fields to descend into; the shape of the last level is checked below.
      nodes = i === steps.length - 1 ? next : next.filter((n) => typeof n.v === "object" && !Array.isArray(n.v));
    }
    for (const n of nodes) if (!fits(n.v, shape)) return { path: n.path, detail: `expected ${EXPECTED[shape]}, got ${kindOf(n.v)}` };
  }
  return undefined;
}
