// The features ciliate does not enforce, as one list: what is refused (never ignored, never opened at L4)
// and what is accepted with a warning, each by the stable code its problem or warning carries.
// docs/policy.md's "Refused" and "Warned" tables are checked against this list and against the codes the
// validators emit (tests/policy/docs-table.test.ts), so the documentation says exactly what the code does.

export interface NotEnforced {
  code: string;
  /** The fields or forms it concerns, as docs/policy.md names them. */
  what: string;
}

/** Refused because ciliate cannot enforce it (the policy carrying it is not applied). */
export const REFUSED_NOT_ENFORCEABLE: readonly NotEnforced[] = [
  { code: "unsupported-field", what: "toGroups / fromGroups (cloud security groups)" },
  { code: "unsupported-node-selector", what: "fromNodes / toNodes without Config nodeSelectorLabels (Cilium's enable-node-selector-labels)" },
  { code: "unsupported-cidr-group", what: "cidrGroupRef / cidrGroupSelector" },
  { code: "unsupported-l7", what: "generic l7proto rules" },
  { code: "unsupported-listener", what: "listener (CiliumEnvoyConfig listeners)" },
  { code: "unsupported-tls", what: "terminatingTLS / originatingTLS (so serverNames together with L7 rules)" },
  { code: "unsupported-authentication", what: "authentication.mode required / test-always-fail" },
  { code: "unsupported-header-secret", what: "headerMatches[].secret" },
  { code: "extended-protocol-disabled", what: "protocol VRRP / IGMP without Config enableExtendedIPProtocols (Cilium's enable-extended-ip-protocols)" },
];

/** Accepted, with a warning naming what is not (fully) enforced; an error with --strict. */
export const WARNED: readonly NotEnforced[] = [
  { code: "host-policy-not-enforced", what: "nodeSelector rules (host policies) while the host firewall is off (Config enableHostFirewall, agent --enable-host-firewall)" },
  { code: "host-policy-local-pods", what: "host policies for traffic between a node and its own pods, unless they allow every pod in each direction they touch" },
  { code: "log-not-reported", what: "the rule's log value" },
  { code: "service-selects-nothing", what: "a toServices entry with neither k8sService nor k8sServiceSelector" },
  { code: "endport-below-port", what: "a CiliumNetworkPolicy port whose endPort is below its port (the port alone is allowed)" },
  { code: "init-in-namespaced-policy", what: "a CiliumNetworkPolicy whose endpointSelector selects reserved:init (it selects nothing)" },
  { code: "named-port-ambiguous", what: "an egress port name with different numbers on pods of one identity (none of them allowed)" },
];
