/*
 * The node configuration the datapath reads at run time: the one ConfigValue entry (key 0) of the Config
 * array map, written by the agent or the simulator at start. Cilium compiles these settings into each
 * program as constants (bpf/node_config.h, DECLARE_CONFIG in newer releases); ciliate keeps them in a map
 * so one build serves every node and scenario.
 */
import { MapId } from "./gen/layout";
import { mapLookup } from "./maps";
import { stackAlloc } from "./alloc";

/**
 * The ConfigValue of this node.
 * Outcomes:
 *   - a pointer to the ConfigValue (CONFIG_VALUE_* offsets);
 *   - 0 when the Config map does not exist (or scratch memory is exhausted): callers drop with
 *     DROP_NO_CONFIG (165), as Cilium does when its per-endpoint configuration is missing.
 */
export function configGet(): usize {
  const key = stackAlloc(4); // zeroed: index 0
  if (key == 0) return 0;
  return mapLookup(MapId.Config, key);
}
