#!/usr/bin/env bash
# Builds the ROS 2 `tf2_msgs` interface package (msg/TFMessage only; tf2_msgs is not on PyPI) into a
# venv that already holds the PyPI ros-* Kilted wheels of requirements.txt. Its type hash equals the
# official one, so it interoperates with real tf2_ros listeners and RViz.
# Needs cmake >= 3.21, g++, make and the venv interpreter's headers.
#   usage: scripts/build_tf2_msgs.sh VENV [WORKDIR]
set -euo pipefail
VENV=$(cd "$1" && pwd)
WORK=${2:-$(mktemp -d)}
PY=$VENV/bin/python
SRC=$WORK/src/tf2_msgs
mkdir -p "$SRC/msg"
printf 'geometry_msgs/TransformStamped[] transforms\n' > "$SRC/msg/TFMessage.msg"
cat > "$SRC/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.42.0</version>
  <description>tf2 messages (TFMessage only)</description>
  <maintainer email="maintainer@example.com">maintainer</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
cat > "$SRC/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.21)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
# The PyPI wheels export *__rosidl_generator_py targets with the include dirs of the machine that
# built them, which breaks the generate step: point them at this interpreter instead.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
get_directory_property(_imported IMPORTED_TARGETS)
foreach(_t IN LISTS _imported)
  if(_t MATCHES "__rosidl_generator_py$")
    set_target_properties(${_t} PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
  endif()
endforeach()
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CM
# the rosidl generators run through the venv's python
export PATH="$VENV/bin:$PATH"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY >"$WORK/configure.log" \
  || { tail -30 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" -j"$(nproc)" >"$WORK/build.log" || { tail -30 "$WORK/build.log" >&2; exit 1; }
cmake --install "$WORK/build" >"$WORK/install.log"
# a fresh interpreter, so that the wheels' bootstrap .pth sets the library path
"$PY" -c 'from tf2_msgs.msg import TFMessage; from rclpy.serialization import serialize_message as s; print("tf2_msgs built, empty message", len(s(TFMessage())), "bytes")'
