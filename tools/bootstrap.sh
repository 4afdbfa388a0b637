#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need, skipping what is already done:
#   1. Debian packages (when root): the Fashion-MNIST dataset and the C/C++ build tools.
#   2. A Python venv with the pinned requirements.lock, cached per lock hash under
#      $EDGEML_CACHE_DIR (default ~/.cache/edgeml_ros) and linked as .venv, so that fresh clones
#      on the same machine reuse it.
#   3. The real ROS 2 command line and `launch` (../shared/ros2_tools/install.sh) when this host
#      has no ROS 2 install that provides `ros2 launch`.
#   4. A colcon build of the package (messages + Python) into install/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { printf '[bootstrap] %s\n' "$*"; }

# 1. Debian packages.
need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "missing Debian packages: ${need_apt[*]} (not root: install them with sudo apt-get)"
    exit 1
  fi
fi

# 2. The venv.
lock_hash=$(sha256sum requirements.lock | cut -c1-16)
cache=${EDGEML_CACHE_DIR:-$HOME/.cache/edgeml_ros}
venv=$cache/venv-$lock_hash
if [ ! -f "$venv/.complete" ]; then
  log "creating venv $venv from requirements.lock (about 2 minutes, 6 GB)"
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q -r requirements.lock
  touch "$venv/.complete"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  rm -rf .venv
  ln -s "$venv" .venv
fi

# 3. ros2 launch/param/topic/node/lifecycle: a ROS 2 install's, or the upstream releases in
#    ../shared/ros2_tools installed into the venv (a no-op once done).
tools=$root/../shared/ros2_tools
if ! command -v ros2 >/dev/null || ! ros2 launch --help >/dev/null 2>&1; then
  if [ -f "$tools/install.sh" ]; then
    bash "$tools/install.sh" .venv >/dev/null
  elif [ ! -f .venv/ros2_tools/local_setup.bash ]; then
    log "no ROS 2 command line: the launch tests will skip (source a ROS 2 install to run them)"
  fi
fi

# 4. colcon build, when a build input is newer than the last build.
stamp=install/.edgeml_build_stamp
if [ ! -f "$stamp" ] || [ -n "$(find msg scripts launch config edgeml_ros CMakeLists.txt \
    package.xml -newer "$stamp" -print -quit)" ] || [ "$(cat "$stamp")" != "$venv" ]; then
  log "colcon build"
  mkdir -p log
  set +u
  # shellcheck disable=SC1091
  source .venv/bin/activate
  set -u
  export AMENT_PREFIX_PATH=$VIRTUAL_ENV CMAKE_PREFIX_PATH=$VIRTUAL_ENV
  colcon --log-base log build --symlink-install --base-paths . \
    --event-handlers console_cohesion- summary+ status- \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" \
    >log/colcon-build.txt 2>&1 || { cat log/colcon-build.txt; exit 1; }
  echo "$venv" >"$stamp"
fi
