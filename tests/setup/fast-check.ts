// Property tests draw random cases. Outside CI every run draws new ones (fast-check prints the seed and path
// of any counterexample); in CI the seed is fixed so that a run on a clean clone is reproducible and a
// red build always means a change broke something, not that a new random case was drawn. FC_SEED sets the
// seed anywhere, to replay a failure or to explore on purpose.
import fc from "fast-check";

const fromEnv = process.env.FC_SEED;
if (fromEnv !== undefined && fromEnv !== "") {
  const seed = Number(fromEnv);
  if (!Number.isInteger(seed)) throw new Error(`FC_SEED=${JSON.stringify(fromEnv)} is not an integer`);
  fc.configureGlobal({ seed });
} else if (process.env.CI === "true") {
  fc.configureGlobal({ seed: 20261207 });
}
