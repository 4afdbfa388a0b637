#!/usr/bin/env bash
# Run a command in the environment of tools/setup.bash, talking DDS on this host only unless the
# caller says otherwise (tests and benchmarks never leave loopback or their own namespaces).
set -eo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/setup.bash"
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export PYTHONUNBUFFERED=1
exec "$@"
