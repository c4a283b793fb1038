#!/usr/bin/env bash
# Creates (or completes) the development virtual environment .venv. Idempotent: a second run with an
# unchanged requirements.txt and this script only checks and returns.
#   usage: scripts/setup_venv.sh [VENV]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.i2p_setup_stamp"
want=$(cat requirements.txt scripts/setup_venv.sh scripts/build_tf2_msgs.sh | sha256sum | cut -d' ' -f1)

have_libusb() { ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so'; }
if ! have_libusb; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's libusb-1.0-0 (open3d needs it)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "setup: open3d needs the system library libusb-1.0 and it is missing." >&2
    echo "       Install it as root: apt-get install libusb-1.0-0   (then run make setup again)" >&2
    exit 1
  fi
fi
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing cmake and g++ (to build tf2_msgs)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ make >/dev/null
  else
    echo "setup: building tf2_msgs needs cmake and g++; install them (apt-get install cmake g++)" >&2
    exit 1
  fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c 'import tf2_msgs.msg' 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "setup: installing requirements.txt into $VENV (a few minutes the first time)"
# (pip's notes about unreachable extra index folders of some machines are filtered out; with
# pipefail, a failing pip still fails the script)
"$VENV/bin/python" -m pip install -q -r requirements.txt 2>&1 | { grep -v 'is ignored: it is neither' || true; }
if ! "$VENV/bin/python" -c 'import tf2_msgs.msg' 2>/dev/null; then
  echo "setup: building tf2_msgs into $VENV"
  bash scripts/build_tf2_msgs.sh "$VENV"
fi
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" - <<'PY'
import cv2, numpy, open3d, rclpy, rosbags, scipy, torch  # noqa: F401
from tf2_msgs.msg import TFMessage  # noqa: F401
print(f"setup: ok (torch {torch.__version__}, open3d {open3d.__version__}, numpy {numpy.__version__})")
PY
echo "$want" > "$STAMP"
