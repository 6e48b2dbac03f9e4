#!/bin/sh
# Installs the ciliate CNI plugin on a node: the `ciliate cni` command (Node.js and the bundled CLI,
# build/cli/), a wrapper named after the configuration's plugin type (`ciliate-cni`) in the CNI binary
# directory, and the network configuration list in the CNI configuration directory. Used by the
# DaemonSet's init container (deploy/kubernetes/30-daemonset.yaml, with the host's directories mounted)
# and as is on nodes run by systemd (docs/agent.md, "Deploying").
#
# Each file is written beside its target and renamed into place, so a container runtime never executes a
# half-written plugin or reads a half-written configuration. Running it again replaces the installation.
#
# Environment (defaults in brackets):
#   CNI_BIN_DIR       where the plugin goes, as this script sees it             [/opt/cni/bin]
#   HOST_CNI_BIN_DIR  the same directory as the container runtime sees it      [$CNI_BIN_DIR]
#   CNI_CONF_DIR      where the configuration goes                              [/etc/cni/net.d]
#   CNI_CONF_NAME     the configuration's file name (runtimes take the first)  [05-ciliate.conflist]
#   CILIATE_SOCKET    the agent API socket the plugin calls                     [/var/run/ciliate/agent.sock]
#   CILIATE_CLI_DIR   the bundled CLI (npm run build)                           [build/cli of this checkout]
#   NODE_BIN          the node executable copied beside it                      [node on PATH]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
HOST_CNI_BIN_DIR=${HOST_CNI_BIN_DIR:-$CNI_BIN_DIR}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
CNI_CONF_NAME=${CNI_CONF_NAME:-05-ciliate.conflist}
CILIATE_SOCKET=${CILIATE_SOCKET:-/var/run/ciliate/agent.sock}
CILIATE_CLI_DIR=${CILIATE_CLI_DIR:-$here/../../build/cli}
NODE_BIN=${NODE_BIN:-$(command -v node || true)}

fail() {
  echo "install-cni: $*" >&2
  exit 1
}
[ -f "$CILIATE_CLI_DIR/ciliate.mjs" ] || fail "$CILIATE_CLI_DIR/ciliate.mjs not found: run \`npm run build\` or set CILIATE_CLI_DIR"
[ -n "$NODE_BIN" ] && [ -x "$NODE_BIN" ] || fail "no node executable: set NODE_BIN"
case "$CILIATE_SOCKET" in *'"'* | *'\'*) fail "CILIATE_SOCKET must not contain quotes or backslashes" ;; esac
mkdir -p "$CNI_BIN_DIR" "$CNI_CONF_DIR"

# The runtime starts the plugin for every pod with a minimal environment: the wrapper names its node and
# bundle by absolute host path, and the copy keeps the plugin working when the agent's image changes.
lib="$CNI_BIN_DIR/ciliate-cni.d"
rm -rf "$lib.new"
mkdir -p "$lib.new"
cp "$NODE_BIN" "$lib.new/node"
cp -R "$CILIATE_CLI_DIR" "$lib.new/cli"
rm -rf "$lib.old"
[ ! -e "$lib" ] || mv "$lib" "$lib.old"
mv "$lib.new" "$lib"
rm -rf "$lib.old"

cat > "$CNI_BIN_DIR/.ciliate-cni.new" <<WRAPPER
#!/bin/sh
exec "$HOST_CNI_BIN_DIR/ciliate-cni.d/node" "$HOST_CNI_BIN_DIR/ciliate-cni.d/cli/ciliate.mjs" cni
WRAPPER
chmod 0755 "$CNI_BIN_DIR/.ciliate-cni.new"
mv "$CNI_BIN_DIR/.ciliate-cni.new" "$CNI_BIN_DIR/ciliate-cni"

# The configuration cli/commands/cni.ts reads: cniVersion, name, and the agent's socket.
cat > "$CNI_CONF_DIR/.$CNI_CONF_NAME.new" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "ciliate",
  "plugins": [
    { "type": "ciliate-cni", "socket": "$CILIATE_SOCKET" }
  ]
}
CONF
mv "$CNI_CONF_DIR/.$CNI_CONF_NAME.new" "$CNI_CONF_DIR/$CNI_CONF_NAME"
echo "install-cni: $CNI_BIN_DIR/ciliate-cni and $CNI_CONF_DIR/$CNI_CONF_NAME installed (agent socket $CILIATE_SOCKET)"
