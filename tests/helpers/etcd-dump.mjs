// Prints every key under a prefix of an etcd as one JSON object (key → value); used by tests/helpers/etcd.ts
// to read an etcd that listens inside a network namespace (run there with `ip netns exec`).
import { Etcd3 } from "etcd3";

const [endpoint, prefix] = process.argv.slice(2);
const client = new Etcd3({ hosts: [endpoint], dialTimeout: 3000 });
try {
  process.stdout.write(JSON.stringify(await client.getAll().prefix(prefix).strings()));
} finally {
  client.close();
}
